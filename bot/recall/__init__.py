"""/recall: a server's messages indexed by meaning (embeddings in SQLite) and searched with numpy."""
