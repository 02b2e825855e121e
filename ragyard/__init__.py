"""ragyard, the ground floor: settings, the service kit (kit/), the bentos' wire contracts and
clients, the token estimates, the Milvus collection schema, the embedding model, local process
supervision; and the `ragyard` command (cli/), the one package that may import every layer. See
docs/architecture.md."""
