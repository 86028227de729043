"""The task lifecycle: state (``evolve``), decisions (``decide``) and ingress validation."""
