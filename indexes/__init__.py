"""agentkit.indexes: loaders, splitters and vector-store backends (FAISS, Chroma) for local documents.

Filled by the index / RAG issue; embeddings come from `agentkit.models.LocalEmbeddings`."""
