"""tinymnist: a tiny, accurate MNIST classifier built with Keras 3, exported for mobile.

This package must stay import-light: ``app.predict`` runs on LiteRT alone, so nothing here
imports TensorFlow or Keras at module level.
"""

__version__ = "0.1.0"
