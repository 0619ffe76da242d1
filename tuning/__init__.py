"""agentkit.tuning: one folder per tuning method (full, LoRA, prefix, prompt, P-Tuning, v2, RLHF).

Filled by the tuning issue; results land in the registry as adapters (`agentkit.registry`)."""
