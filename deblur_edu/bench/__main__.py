"""``python -m deblur_edu.bench``: the benchmark command (:mod:`deblur_edu.bench.run`)."""

import sys

from .run import main

sys.exit(main())
