#!/usr/bin/env python3
"""Static checks for Terraform that cannot be `terraform validate`d offline.

Provider plugins cannot be downloaded where CI runs, so the cloud modules are checked with a real
HCL parser (python-hcl2) instead:
  * every file parses;
  * every variable is declared with a type and a description;
  * every `var.X` and `local.X` a directory uses is declared there;
  * every call of a local module passes only inputs that module declares, passes every input it
    requires, and reads only outputs it declares.
Usage: check-terraform.py DIR...   (each DIR is searched for directories holding .tf files)
"""

import re
import sys
from pathlib import Path

import hcl2

META_ARGS = {"source", "version", "providers", "depends_on", "count", "for_each"}


def args(body):
    """Attribute names of a block body (python-hcl2 adds line-number bookkeeping keys)."""
    return [k for k in body if not k.startswith("__")]


def strip_comments(text):
    # Good enough for reference scanning: drop # and // line comments outside strings is not
    # needed for correctness of declarations, only to avoid matching commented-out code.
    return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", line) for line in text.splitlines())


class Module:
    def __init__(self, path):
        self.path = path
        self.variables = {}  # name -> body
        self.outputs = set()
        self.locals = set()
        self.calls = []  # (file, name, body)
        self.text = ""
        self.errors = []
        for f in sorted(path.glob("*.tf")):
            raw = f.read_text()
            self.text += strip_comments(raw) + "\n"
            try:
                with f.open() as fh:
                    doc = hcl2.load(fh)
            except Exception as e:  # noqa: BLE001 - any parse failure is a finding
                self.errors.append(f"{f}: does not parse: {e}")
                continue
            for block in doc.get("variable", []):
                for name, body in block.items():
                    self.variables[unquote(name)] = (f, body)
            for block in doc.get("output", []):
                self.outputs.update(unquote(n) for n in block)
            for block in doc.get("locals", []):
                self.locals.update(unquote(n) for n in block)
            for block in doc.get("module", []):
                for name, body in block.items():
                    self.calls.append((f, unquote(name), body))


def unquote(s):
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == '"' else s


def expr_text(v):
    # python-hcl2 gives attribute values as one-element lists.
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    return unquote(v) if isinstance(v, str) else str(v)


def check(root_dirs):
    dirs = sorted({f.parent for d in root_dirs for f in Path(d).rglob("*.tf") if ".terraform" not in f.parts})
    modules = {d.resolve(): Module(d) for d in dirs}
    errors = []
    for d, m in modules.items():
        errors += m.errors
        for name, (f, body) in m.variables.items():
            for key in ("type", "description"):
                if key not in body:
                    errors.append(f"{f}: variable {name!r} has no {key}")
        for name in sorted(set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", m.text))):
            if name not in m.variables:
                errors.append(f"{m.path}: var.{name} is used but not declared")
        for name in sorted(set(re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)", m.text))):
            if name not in m.locals:
                errors.append(f"{m.path}: local.{name} is used but not defined")
        for f, name, body in m.calls:
            source = expr_text(body.get("source", ""))
            if not source.startswith("."):
                continue  # a registry or git module: nothing local to compare with
            target = modules.get((m.path / source).resolve())
            if target is None:
                errors.append(f"{f}: module {name!r}: source {source} has no .tf files")
                continue
            for arg in args(body):
                if arg not in META_ARGS and arg not in target.variables:
                    errors.append(f"{f}: module {name!r} passes {arg!r}, which {source} does not declare")
            for var, (_, vbody) in target.variables.items():
                if "default" not in vbody and var not in body:
                    errors.append(f"{f}: module {name!r} does not pass required input {var!r} of {source}")
            for out in sorted(set(re.findall(r"\bmodule\." + re.escape(name) + r"\.([A-Za-z_][A-Za-z0-9_-]*)", m.text))):
                if out not in target.outputs:
                    errors.append(f"{m.path}: module.{name}.{out} is not an output of {source}")
    return dirs, errors


if __name__ == "__main__":
    dirs, errors = check(sys.argv[1:] or ["terraform"])
    for e in errors:
        print(e, file=sys.stderr)
    print(f"checked {len(dirs)} Terraform directories: {len(errors)} problems")
    sys.exit(1 if errors else 0)
