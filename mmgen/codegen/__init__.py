"""The code generator: names (one name, every spelling), context (spec -> template values),
render (sandboxed jinja2), formatting (ruff sorts imports and formats what was rendered), plan
(verdicts, dry run, all-or-nothing apply), project (paths).
"""
