"""Channel adapters: one module per network, registered as `commcal.channels` entry points."""
