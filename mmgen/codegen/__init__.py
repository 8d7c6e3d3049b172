"""The code generator: names (one name, every spelling), context (spec -> template values),
render (sandboxed jinja2), plan (verdicts, dry run, all-or-nothing apply), project (paths).
"""
