"""Image codecs behind one small interface (see :mod:`dnaimg.codecs.base`)."""
