"""`python -m keras_swish.recipes ...` is `keras-swish ...`."""

import sys

from keras_swish.cli import main

sys.exit(main())
