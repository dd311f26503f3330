"""One module per `harness` subcommand, each with ``register(subparsers)``."""
