"""``scripts/gpu_check.sh``: one command that shows, on a machine with one NVIDIA GPU, that the
CUDA path of mmgen is correct and how fast it is.

plan.py       the steps in order: command, kind (setup, check, figures) and time limit
runner.py     runs them, each under its limit, writes the summary, and stops with a non-zero exit
              at the first failed check (``python -m mmgen.gpucheck --dry-run`` lists the plan)
summary.py    the markdown summary and where it goes (``$OUT`` when set, else build/gpu-check/)
reference.py  plain-torch references the CUDA checks compare with, and their input cases
              (frequent ids, rare ids, empty inputs)
checks.py     the steps that are no pytest file: the device, host syncs, DDP over nccl, the demo

plan, runner and summary import no torch: the dry run and the runner work before torch is
installed (the first steps install it).
"""
