"""Local knowledge retrieval: Lucene BM25 / E5+FAISS indexes, the HTTP server (/retrieve, /access), its client.

Submodules are imported on demand (Java and torch start only where needed): `index`, `searcher`, `server`,
`client`, `service`, `stores`, `urls`, `java`, `dense`, `address`. See docs/retrieval.md.
"""
