"""``python -m mmgen.gpucheck``: the GPU check's runner (see runner.py)."""

import sys

from mmgen.gpucheck.runner import main

sys.exit(main())
