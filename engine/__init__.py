"""hambaMetal engine: music in, diffusion frames out. knows nothing about OSC or outputs."""

__version__ = "0.1.0"
