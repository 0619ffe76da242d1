"""Prompt templates from YAML or Jinja files, addressed as `name@version`, returned as langchain
`ChatPromptTemplate`s; built-ins live in `builtin/`, user overrides in `$AGENTKIT_HOME/prompts/`."""

from agentkit.prompts.library import BUILTIN_DIR, PromptLibrary, load_prompt, parse_ref, user_prompt_dir
from agentkit.prompts.spec import FewShotExample, MessageSpec, PromptSpec
from agentkit.prompts.template import LibraryPrompt, MissingVariableError

__all__ = [
    "BUILTIN_DIR",
    "FewShotExample",
    "LibraryPrompt",
    "MessageSpec",
    "MissingVariableError",
    "PromptLibrary",
    "PromptSpec",
    "load_prompt",
    "parse_ref",
    "user_prompt_dir",
]
