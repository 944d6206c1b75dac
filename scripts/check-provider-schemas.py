#!/usr/bin/env python3
"""Checks the Terraform modules against the providers' real schemas, and the Kubernetes YAML
against the Kubernetes OpenAPI schemas, offline.

Provider plugins cannot be downloaded where CI runs, so `terraform validate` cannot run on the
cloud modules. The schemas come from the package registries instead:
  * Terraform: the prebuilt CDKTF provider packages on npm (@cdktf/provider-aws, ...) are
    generated from the providers' schemas; their .jsii assembly lists every resource and data
    source, every argument and nested block, whether it is required, and its type. The versions
    are pinned in scripts/provider-schemas.txt; scripts/fetch-provider-schemas.sh downloads them.
    Every `resource` and `data` block is checked for: unknown arguments and nested blocks, missing
    required arguments and blocks, an argument written as a block or a block written as an
    argument, obviously wrong literal types (a list or object where a string is expected, ...),
    and (a warning only) arguments whose docs say they are deprecated. Each pinned provider
    version must also satisfy every module's `required_providers` constraint.
  * Kubernetes: every YAML document under the given directories goes through kubernetes-validate
    (pip) for the oldest and the newest Kubernetes version the project supports
    (KUBERNETES_VERSIONS below; terraform/README.md says why those).
  * The YAML terraform/modules/gateway-manifests renders, in every variant its `terraform test`
    runs use: when a PATH contains the module, each `run` block of its tests/manifests.tftest.hcl
    that does not `expect_failures` (its `variables` over the file's) becomes one module block of
    a temporary root module; `terraform init -backend=false` and `apply` render them all at once
    (offline: the module has no providers), and every object of every variant's YAML outputs goes
    through the same kubernetes-validate checks. --no-variants skips this.

Usage: check-provider-schemas.py [--schemas DIR] [--kubernetes-versions V,V] [--no-variants] PATH...
  PATH: directories searched for *.tf and *.yaml/*.yml files (or single files).
  --schemas: where fetch-provider-schemas.sh put the packages (default $SKYBRIDGE_PROVIDER_SCHEMAS
  or ~/.cache/skybridge/cdktf-schemas).
Exits 1 with one line per problem on stderr: file:line: resource TYPE.NAME: what is wrong.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import hcl2
from hcl2.parser import Hcl2
from lark import Token, Tree

REPO = Path(__file__).resolve().parent.parent
PINS = REPO / "scripts" / "provider-schemas.txt"
# The oldest Kubernetes the docs support (GKE 1.25.5+ for the gateway's load balancer, docs/deploy/
# gcp.md; EKS and AKS support no older) and the newest kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ["1.25.0", "1.37.0"]
# The provider-free module whose rendered YAML is checked in every `terraform test` variant.
MANIFESTS_MODULE = REPO / "terraform" / "modules" / "gateway-manifests"
MANIFESTS_TESTS = MANIFESTS_MODULE / "tests" / "manifests.tftest.hcl"
# Meta-arguments Terraform itself handles on every resource and data block.
META_ATTRS = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"lifecycle", "provisioner", "connection"}
LINK = re.compile(r"\{@link https://registry\.terraform\.io/providers/[^ }]+#([A-Za-z0-9_]+) [A-Za-z0-9_]+#\1\}")
TARGET = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/([^/]+/[^/]+)/([^/]+)/docs/(resources|data-sources)/[^ ]+ ([a-z0-9_]+)\}"
)


# ---------------------------------------------------------------------------------------------
# Schemas from the CDKTF .jsii assemblies


def snake(camel):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def describe(t, types):
    """jsii type -> ("attr", kind) or ("block", fqn, many) or ("object", fqn)."""
    if "union" in t:
        rest = [u for u in t["union"]["types"] if u.get("fqn") != "cdktf.IResolvable"]
        t = rest[0] if len(rest) == 1 else {"primitive": "any"}
    if "primitive" in t:
        return ("attr", {"boolean": "bool", "json": "any"}.get(t["primitive"], t["primitive"]))
    if "collection" in t:
        c = t["collection"]
        el = c["elementtype"]
        if c["kind"] == "array" and "fqn" in el and el["fqn"] in types:
            return ("block", el["fqn"], True)
        return ("attr", "list" if c["kind"] == "array" else "map")
    fqn = t.get("fqn", "")
    if fqn in types:
        return ("block", fqn, False)
    return ("attr", "any")


def build_schema(pkg_dir):
    """Reduces a package's .jsii (100+ MB) to what the checks need; cached as schema.json."""
    cached = pkg_dir / "schema.json"
    if cached.exists() and cached.stat().st_mtime >= (pkg_dir / ".jsii").stat().st_mtime:
        return json.loads(cached.read_text())
    jsii = json.loads((pkg_dir / ".jsii").read_text())
    types = jsii["types"]
    out = {"package": jsii["name"], "version": jsii["version"], "resource": {}, "data": {}, "types": {}}
    guessed = 0
    needed = []
    for t in types.values():
        if t.get("kind") != "class" or t.get("base") not in ("cdktf.TerraformResource", "cdktf.TerraformDataSource"):
            continue
        m = TARGET.search(t.get("docs", {}).get("summary", ""))
        if not m:
            continue
        out["provider"], out["provider_version"] = m.group(1), m.group(2)
        config = next(p["type"]["fqn"] for p in t["initializer"]["parameters"] if p["name"] == "config")
        out["resource" if m.group(3) == "resources" else "data"][m.group(4)] = config
        needed.append(config)
    seen = set()
    while needed:
        fqn = needed.pop()
        if fqn in seen:
            continue
        seen.add(fqn)
        props = {}
        for p in types[fqn].get("properties", []):
            docs = p.get("docs", {})
            text = docs.get("summary", "") + "\n" + docs.get("remarks", "")
            link = LINK.search(text)
            if link:
                name = link.group(1)
            else:
                name = snake(p["name"])
                guessed += 1
            d = describe(p["type"], types)
            entry = {"required": not p.get("optional", False)}
            if d[0] == "block":
                # Blocks' summaries are "<name> block."; a nested *attribute* (an object) has its
                # own description and is written `name = {...}`.
                is_block = docs.get("summary", "").strip() == f"{name} block."
                entry.update(kind="block" if is_block else "attr", type="list" if d[2] else "object", nested=d[1])
                if is_block:
                    entry["many"] = d[2]
                    needed.append(d[1])
                else:
                    entry["nested"] = None
            else:
                entry.update(kind="attr", type=d[1])
            # CDKTF carries no deprecation flag; the provider's description says it ("Deprecated:
            # ...", "**Deprecated** ...", "... is deprecated ...").
            dep = re.search(r"(?i)(^\W*deprecated\b|\bis deprecated\b|\bhas been deprecated\b)", text)
            if dep:
                entry["deprecated"] = " ".join(text.split())[:160]
            props[name] = entry
        out["types"][fqn] = props
    out["guessed_names"] = guessed
    cached.write_text(json.dumps(out))
    return out


def load_pins():
    pins = []
    for line in PINS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pkg, version, provider, pversion = line.split()
            pins.append((pkg, version, provider, pversion))
    return pins


def load_schemas(cache):
    """provider local name ("aws") -> [schema, ...]; errors for pins that are missing or mismatched."""
    schemas, errors = {}, []
    for pkg, version, provider, pversion in load_pins():
        d = cache / f"{pkg.split('/')[-1]}-{version}"
        if not (d / ".jsii").exists():
            errors.append(f"{pkg}@{version} is not in {cache}: run scripts/fetch-provider-schemas.sh")
            continue
        meta = json.loads((d / "package.json").read_text()).get("cdktf", {}).get("provider", {})
        s = build_schema(d)
        if s["version"] != version or s.get("provider_version") != pversion or meta.get("version") != pversion:
            errors.append(
                f"{pkg}@{version}: package says {s['version']} / provider {s.get('provider_version')} "
                f"(package.json {meta.get('version')}), scripts/provider-schemas.txt says {version} / {pversion}"
            )
        s["pin"] = (pkg, version, provider, pversion)
        schemas.setdefault(provider.split("/")[-1], []).append(s)
    return schemas, errors


# ---------------------------------------------------------------------------------------------
# Version constraints


def vtuple(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3]) + (0,) * (3 - len(re.findall(r"\d+", v)[:3]))


def satisfies(version, constraint):
    v = vtuple(version)
    for part in constraint.split(","):
        m = re.match(r"\s*(>=|<=|!=|~>|>|<|=)?\s*([0-9][0-9.]*)\s*$", part)
        if not m:
            return False
        op, want = m.group(1) or "=", m.group(2)
        w = vtuple(want)
        if op == "~>":
            n = len(want.split("."))
            upper = list(w[: max(n - 1, 1)])
            upper[-1] += 1
            ok = v >= w and v < tuple(upper) + (0,) * (3 - len(upper))
        else:
            ok = {">=": v >= w, "<=": v <= w, ">": v > w, "<": v < w, "=": v == w, "!=": v != w}[op]
        if not ok:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Terraform files


def ident(node):
    if isinstance(node, Token):
        return node.value.strip('"')
    return "".join(str(c) for c in node.children).strip('"')


def body_items(body):
    """(attributes, blocks) of a `body` tree: [(name, line, expr)], [(type, labels, line, body)]."""
    attrs, blocks = [], []
    for c in body.children:
        if not isinstance(c, Tree):
            continue
        if c.data == "attribute":
            attrs.append((ident(c.children[0]), c.meta.line, c.children[-1]))
        elif c.data == "block":
            kids = [x for x in c.children if (isinstance(x, Tree) and x.data in ("identifier", "body"))
                    or (isinstance(x, Token) and x.type == "STRING_LIT")]
            labels = [ident(x) for x in kids[1:-1]]
            inner = kids[-1]
            blocks.append((ident(c.children[0]), labels, c.meta.line, inner))
    return attrs, blocks


def kind_of(expr):
    """The type a literal expression certainly has, or None when it is not a literal."""
    while isinstance(expr, Tree) and expr.data == "expr_term" and len(expr.children) == 1:
        expr = expr.children[0]
    if isinstance(expr, Token):
        return "string" if expr.type == "STRING_LIT" else None
    if expr.data in ("object", "for_object_expr"):
        return "object"
    if expr.data in ("tuple", "for_tuple_expr"):
        return "list"
    if expr.data in ("int_lit", "float_lit"):
        return "number"
    if expr.data.startswith("heredoc_template") or expr.data in ("string_lit", "string"):
        return "string"
    if expr.data == "unary_op":
        inner = kind_of(expr.children[-1])
        return inner if inner == "number" else None
    if expr.data == "identifier":
        v = ident(expr)
        return {"true": "bool", "false": "bool", "null": "null"}.get(v)
    return None


# What each schema type accepts, among the literal kinds above (Terraform converts numbers and
# bools to strings, and numeric strings to numbers, so those are not flagged).
ACCEPTS = {
    "string": {"string", "number", "bool", "null"},
    "number": {"number", "string", "null"},
    "bool": {"bool", "string", "null"},
    "list": {"list", "null"},
    "map": {"object", "null"},
    "object": {"object", "null"},
    "any": {"string", "number", "bool", "null", "list", "object"},
}


def check_body(schema, fqn, body, where, problems, warnings, path=""):
    props = schema["types"][fqn]
    attrs, blocks = body_items(body)
    present = set()
    for name, line, expr in attrs:
        loc = f"{where[0]}:{line}: {where[1]}"
        if not path and name in META_ATTRS:
            continue
        p = props.get(name)
        present.add(name)
        if p is None:
            problems.append(f"{loc}: unknown argument '{path}{name}'")
        elif p["kind"] == "block":
            problems.append(f"{loc}: '{path}{name}' is a block, not an argument: write `{name} {{ ... }}`")
        else:
            k = kind_of(expr)
            if k is not None and k not in ACCEPTS[p["type"]]:
                problems.append(f"{loc}: argument '{path}{name}' expects {p['type']}, got a {k}")
            if "deprecated" in p:
                warnings.append(f"{loc}: argument '{path}{name}' is deprecated: {p['deprecated']}")
    for btype, labels, line, inner in blocks:
        loc = f"{where[0]}:{line}: {where[1]}"
        if not path and btype in META_BLOCKS:
            continue
        if btype == "dynamic":
            name = labels[0] if labels else ""
            content = [b for b in body_items(inner)[1] if b[0] == "content"]
            if not content:
                problems.append(f"{loc}: dynamic '{path}{name}' has no content block")
            targets = [(name, line, c[3]) for c in content]
        else:
            name = btype
            targets = [(name, line, inner)]
        p = props.get(name)
        present.add(name)
        if p is None:
            problems.append(f"{loc}: unknown block '{path}{name}'")
            continue
        if p["kind"] != "block":
            problems.append(f"{loc}: '{path}{name}' is an argument, not a block: write `{name} = ...`")
            continue
        if "deprecated" in p:
            warnings.append(f"{loc}: block '{path}{name}' is deprecated: {p['deprecated']}")
        for _, _, b in targets:
            check_body(schema, p["nested"], b, (where[0], where[1], line), problems, warnings, f"{path}{name}.")
    for name, p in sorted(props.items()):
        if p["required"] and name not in present:
            what = "block" if p["kind"] == "block" else "argument"
            problems.append(f"{where[0]}:{where[2]}: {where[1]}: missing required {what} '{path}{name}'")
    # Repeated single blocks (max one).
    counts = {}
    for btype, labels, _, _ in blocks:
        if btype != "dynamic" and btype not in META_BLOCKS:
            counts[btype] = counts.get(btype, 0) + 1
    for name, n in counts.items():
        p = props.get(name)
        if p and p["kind"] == "block" and not p.get("many") and n > 1:
            problems.append(f"{where[0]}:{where[2]}: {where[1]}: block '{path}{name}' may appear once, appears {n} times")


def required_providers(tf_files):
    """(file, provider local name, constraint) from `terraform { required_providers { ... } }`."""
    out = []
    for f in tf_files:
        try:
            doc = hcl2.loads(f.read_text())
        except Exception:  # noqa: BLE001 - reported by the main walk
            continue
        for tb in doc.get("terraform", []):
            for rp in tb.get("required_providers", []):
                for name, spec in rp.items():
                    if name.startswith("__"):
                        continue
                    spec = spec[0] if isinstance(spec, list) and spec else spec
                    if isinstance(spec, dict) and "version" in spec:
                        v = spec["version"]
                        v = v[0] if isinstance(v, list) else v
                        out.append((f, name, str(v).strip('"')))
    return out


def check_terraform(tf_files, schemas, problems, warnings, used):
    for f in tf_files:
        rel = os.path.relpath(f, Path.cwd())
        try:
            tree = Hcl2.lark_parser.parse(f.read_text() + "\n")
        except Exception as e:  # noqa: BLE001 - any parse failure is a finding
            problems.append(f"{rel}: does not parse: {str(e).splitlines()[0]}")
            continue
        _, blocks = body_items(tree.children[0])
        for btype, labels, line, body in blocks:
            if btype not in ("resource", "data") or len(labels) != 2:
                continue
            rtype, name = labels
            label = f"{'data.' if btype == 'data' else ''}{rtype}.{name}"
            provider = rtype.split("_")[0]
            if provider not in schemas:
                problems.append(f"{rel}:{line}: {label}: no schema for provider {provider!r} in scripts/provider-schemas.txt")
                continue
            # Against every pinned version of the provider; a finding names the versions it
            # holds for ("(aws 5.5.0, 6.25.0)").
            found = {}
            for schema in schemas[provider]:
                mine, theirs = [], []
                fqn = schema[btype].get(rtype)
                if fqn is None:
                    kind = "data source" if btype == "data" else "resource type"
                    mine.append(f"{rel}:{line}: {label}: unknown {kind} {rtype!r}")
                else:
                    used[schema["pin"]] = used.get(schema["pin"], 0) + 1
                    # kubernetes_manifest: `manifest` is a map of anything in the schema, so its
                    # contents (the object's own schema lives in the cluster) are not checked; its
                    # other arguments and blocks are, like any resource's.
                    check_body(schema, fqn, body, (rel, label, line), mine, theirs)
                for m in mine + [f"warning: {t}" for t in theirs]:
                    found.setdefault(m, []).append(schema["provider_version"])
            for m, vs in found.items():
                (warnings if m.startswith("warning: ") else problems).append(
                    f"{m.removeprefix('warning: ')} ({provider} {', '.join(vs)})")


# ---------------------------------------------------------------------------------------------
# Kubernetes YAML


def all_errors(data, version):
    """Every schema error of one object, as kubernetes_validate.validate(strict=True) finds them."""
    import jsonschema
    from kubernetes_validate import utils as u

    schema_version = [x for x in u.all_versions() if u.major_minor(x) <= u.major_minor(version)][-1]
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", data["apiVersion"])
    schema_dir = f"v{schema_version}-local-strict"
    schema = u.schema_contents(
        f"kubernetes-json-schema/{schema_dir}/{data['kind'].lower()}-{api_version}.json", version)
    defs = u.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry = u.Resource.from_contents(defs) @ (u.Resource.from_contents(schema) @ u.Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))


def check_docs(docs, rel, versions, problems):
    """Validates parsed Kubernetes objects; rel names where they came from in the findings."""
    import kubernetes_validate

    for d in docs:
        what = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        for v in versions:
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except kubernetes_validate.ValidationError:
                # validate() stops at the first error; list them all.
                for e in all_errors(d, v):
                    path = ".".join(str(p) for p in e.absolute_path)
                    problems.append(f"{rel}: {what}: Kubernetes {v}: {path or '(top)'}: {e.message}")
            except Exception as e:  # noqa: BLE001 - no schema for the kind, etc.
                problems.append(f"{rel}: {what}: Kubernetes {v}: {type(e).__name__}: {e}")
    return len(docs)


def check_yaml(yaml_files, versions, problems):
    import yaml

    n = 0
    for f in yaml_files:
        rel = os.path.relpath(f, Path.cwd())
        try:
            docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        except yaml.YAMLError as e:
            problems.append(f"{rel}: does not parse as YAML: {e}")
            continue
        n += check_docs(docs, rel, versions, problems)
    return n


# ---------------------------------------------------------------------------------------------
# The manifests module's `terraform test` variants


def test_variants(tests_file):
    """[(run name, {variable: its HCL source text})] for each run that renders (no expect_failures):
    the file-level `variables` with the run's own over them. The values stay HCL source, so
    heredocs, escapes and expressions reach Terraform exactly as the test writes them."""
    src = tests_file.read_text() + "\n"
    top = Hcl2.lark_parser.parse(src).children[0]

    def variables(body):
        out = {}
        for btype, _, _, inner in body_items(body)[1]:
            if btype == "variables":
                for c in inner.children:
                    if isinstance(c, Tree) and c.data == "attribute":
                        out[ident(c.children[0])] = src[c.meta.start_pos:c.meta.end_pos].strip()
        return out

    common = variables(top)
    runs = []
    for btype, labels, _, body in body_items(top)[1]:
        if btype != "run" or not labels:
            continue
        attrs, inner_blocks = body_items(body)
        if any(name == "expect_failures" for name, _, _ in attrs):
            continue
        if any(b[0] == "module" for b in inner_blocks):
            continue  # a run of another module
        runs.append((labels[0], {**common, **variables(body)}))
    return runs


def render_variants(module, runs, problems):
    """{run name: {output name: value}}: every variant rendered by one `terraform apply`."""
    if not shutil.which("terraform"):
        problems.append(f"{os.path.relpath(module, Path.cwd())}: terraform is not installed: its test variants "
                        "cannot be rendered (it is not in the package registries: releases.hashicorp.com)")
        return {}
    work = Path(tempfile.mkdtemp(prefix="skybridge-variants-"))
    try:
        main_tf = []
        # Run names are identifiers, so each variant's module block and output bear its name.
        for name, values in runs:
            main_tf.append(f'module "{name}" {{\n  source = "{module}"\n')
            main_tf += [f"  {v}\n" for v in values.values()]
            main_tf.append(f'}}\n\noutput "{name}" {{\n  value = module.{name}\n}}\n\n')
        (work / "main.tf").write_text("".join(main_tf))
        (work / "terraformrc").write_text("")
        env = dict(os.environ, TF_IN_AUTOMATION="1", TF_CLI_CONFIG_FILE=str(work / "terraformrc"),
                   TF_DATA_DIR=str(work / ".terraform"))
        # The state: terraform.tfstate in the temporary folder (-chdir).
        for args in (["init", "-backend=false", "-input=false", "-no-color"],
                     ["apply", "-auto-approve", "-input=false", "-no-color"],
                     ["output", "-json", "-no-color"]):
            out = subprocess.run(["terraform", f"-chdir={work}", *args], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                text = (out.stdout + out.stderr).strip()
                problems.append(f"{os.path.relpath(module, Path.cwd())}: rendering the test variants failed: "
                                f"terraform {args[0]}:\n{text}")
                return {}
        outputs = json.loads(out.stdout)
        return {name: outputs[name]["value"] for name, _ in runs}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_variants(module, tests_file, versions, problems):
    """(variants, objects) checked: every object in the YAML outputs of every rendering run."""
    import yaml

    runs = test_variants(tests_file)
    rendered = render_variants(module, runs, problems)
    rel_tests = os.path.relpath(tests_file, Path.cwd())
    n = 0
    for name, outputs in rendered.items():
        # *_yaml are the streams kubectl applies; namespace_manifest and manifests (for
        # kubernetes_manifest) hold the same objects. Each distinct object is checked once.
        texts = [v for k, v in sorted(outputs.items()) if k.endswith("_yaml") and v]
        texts.append(outputs.get("namespace_manifest") or "")
        texts += list((outputs.get("manifests") or {}).values())
        seen, docs = set(), []
        for t in texts:
            for d in yaml.safe_load_all(t):
                key = json.dumps(d, sort_keys=True)
                if d and key not in seen:
                    seen.add(key)
                    docs.append(d)
        n += check_docs(docs, f'{rel_tests}: run "{name}"', versions, problems)
    return len(rendered), n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", default=["terraform", "deploy"])
    ap.add_argument("--schemas", type=Path, default=Path(
        os.environ.get("SKYBRIDGE_PROVIDER_SCHEMAS") or Path.home() / ".cache/skybridge/cdktf-schemas"))
    ap.add_argument("--kubernetes-versions", default=",".join(KUBERNETES_VERSIONS))
    ap.add_argument("--no-variants", action="store_true",
                    help="do not render and check the manifests module's terraform test variants")
    a = ap.parse_args()

    tf_files, yaml_files = [], []
    for p in map(Path, a.paths):
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
        for f in files:
            if ".terraform" in f.parts:
                continue
            if f.suffix == ".tf":
                tf_files.append(f)
            elif f.suffix in (".yaml", ".yml"):
                yaml_files.append(f)

    problems, warnings, used = [], [], {}
    schemas, errors = load_schemas(a.schemas)
    problems += errors
    for f, name, constraint in required_providers(tf_files):
        for s in schemas.get(name, []):
            if not satisfies(s["provider_version"], constraint):
                problems.append(
                    f"{os.path.relpath(f, Path.cwd())}: {name} {s['provider_version']} (a checked schema) "
                    f"is outside required_providers {constraint!r}"
                )
    check_terraform(tf_files, schemas, problems, warnings, used)
    versions = [v for v in a.kubernetes_versions.split(",") if v]
    n_docs = check_yaml(yaml_files, versions, problems) if yaml_files else 0
    # The manifests module's test variants, when a PATH holds the module.
    variants = None
    if not a.no_variants and MANIFESTS_TESTS.exists() and any(
            MANIFESTS_MODULE.is_relative_to(p.resolve()) for p in map(Path, a.paths) if p.is_dir()):
        variants = check_variants(MANIFESTS_MODULE, MANIFESTS_TESTS, versions, problems)

    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    for p in problems:
        print(p, file=sys.stderr)
    for name, ss in sorted(schemas.items()):
        for s in ss:
            pkg, version, provider, pversion = s["pin"]
            print(f"schema: {provider} {pversion} from {pkg}@{version}: {used.get(s['pin'], 0)} blocks checked")
    if yaml_files:
        print(f"kubernetes: {n_docs} objects in {len(yaml_files)} YAML files checked against {', '.join(versions)}")
    if variants is not None:
        print(f"kubernetes: {variants[1]} objects in {variants[0]} rendered variants of "
              f"{os.path.relpath(MANIFESTS_MODULE, Path.cwd())} (the runs of "
              f"{os.path.relpath(MANIFESTS_TESTS, Path.cwd())} that render) checked against {', '.join(versions)}")
    print(f"checked {len(tf_files)} Terraform files and {len(yaml_files)} YAML files: "
          f"{len(problems)} problems, {len(warnings)} warnings")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
