"""dnaimg: store images in synthetic DNA with a noise-robust compressive autoencoder."""

__version__ = "0.2.0"
