"""BEM engineering services, consolidated into cluster processes."""

__version__ = "0.1.0"
