#!/usr/bin/env python3
"""Static checks of the Terraform under terraform/, with python-hcl2.

Usage: parse_hcl.py [TERRAFORM_DIR]   (default: terraform/ beside scripts/)

Checks, each failure printed as `path: message`:
  - every .tf file parses;
  - every variable has a non-empty description and a type;
  - every output has a non-empty description;
  - every module directory (a directory holding .tf files) declares at least one output;
  - every cloud module terraform/<cloud>/ has main.tf, variables.tf, outputs.tf,
    versions.tf (with required_version and required_providers), README.md and an
    examples/basic/ root that calls the module;
  - every `#checkov:skip=CKV...` comment gives a reason;
  - no string literal is assigned to a secret argument (password, auth_token,
    secret_string, secret_data, access_key, …) outside variable blocks.
Exit status 0 when all pass, 1 otherwise. The last line is `N passed, N failed`.
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

import hcl2

CLOUD_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")
SKIP_RE = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
SECRET_ARGS = (
    "password",
    "administrator_password",
    "master_password",
    "auth_token",
    "secret_string",
    "secret_data",
    "access_key",
    "secret_key",
    "client_secret",
    "private_key",
)
SECRET_ARG_RE = re.compile(r'^\s*(' + "|".join(SECRET_ARGS) + r')\s*=\s*"(?!\$\{)[^"]*"')


def unquote(label):
    """python-hcl2 8 keeps the quotes of block labels and string values."""
    if isinstance(label, str) and len(label) >= 2 and label[0] == label[-1] == '"':
        return label[1:-1]
    return label


def blocks(doc, kind):
    """Yields (name, body) of each `kind "name" { ... }` block of a parsed file."""
    for entry in doc.get(kind, []) or []:
        for name, body in entry.items():
            yield unquote(name), body


def nonempty(value):
    return isinstance(value, str) and unquote(value).strip() != ""


class Checker:
    def __init__(self, root):
        self.root = root
        self.failures = []
        self.passed = 0

    def check(self, ok, where, message):
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{where}: {message}")

    def rel(self, path):
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def run(self):
        tf_files = sorted(self.root.rglob("*.tf"))
        tf_files = [p for p in tf_files if ".terraform" not in p.parts]
        self.check(bool(tf_files), self.rel(self.root), "no .tf files found")
        outputs_per_dir = defaultdict(int)
        for path in tf_files:
            outputs_per_dir.setdefault(path.parent, 0)
            text = path.read_text(encoding="utf-8")
            try:
                doc = hcl2.loads(text)
            except Exception as e:  # the parser raises several exception types
                self.check(False, self.rel(path), f"does not parse: {e}")
                continue
            self.check(True, self.rel(path), "parses")
            for name, body in blocks(doc, "variable"):
                where = f"{self.rel(path)}: variable {name}"
                self.check(nonempty(body.get("description")), where, "has no description")
                self.check("type" in body, where, "has no type")
            for name, body in blocks(doc, "output"):
                outputs_per_dir[path.parent] += 1
                self.check(nonempty(body.get("description")), f"{self.rel(path)}: output {name}", "has no description")
            self.check_text(path, text, doc)
        for directory, count in sorted(outputs_per_dir.items()):
            self.check(count > 0, self.rel(directory), "module declares no output")
        for cloud in sorted(p for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.tf"))):
            self.check_cloud_module(cloud)

    def check_text(self, path, text, doc):
        for lineno, line in enumerate(text.splitlines(), 1):
            m = SKIP_RE.search(line)
            if m:
                reason = (m.group(2) or "").strip()
                self.check(len(reason) >= 20, f"{self.rel(path)}:{lineno}", f"checkov skip {m.group(1)} without a real reason")
        # Literal secrets: `password = "literal"` anywhere but in a variable's default.
        depth = 0
        in_variable = False
        for lineno, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if depth == 0:
                in_variable = stripped.startswith("variable ")
            m = SECRET_ARG_RE.match(line)
            if m and not in_variable:
                self.check(False, f"{self.rel(path)}:{lineno}", f"literal value for {m.group(1)}")
            depth += line.count("{") - line.count("}")

    def check_cloud_module(self, cloud):
        where = self.rel(cloud)
        for name in CLOUD_FILES:
            self.check((cloud / name).is_file(), where, f"missing {name}")
        versions = cloud / "versions.tf"
        if versions.is_file():
            doc = hcl2.loads(versions.read_text(encoding="utf-8"))
            terraform = (doc.get("terraform") or [{}])[0]
            self.check("required_version" in terraform, f"{where}/versions.tf", "no required_version")
            self.check(bool(terraform.get("required_providers")), f"{where}/versions.tf", "no required_providers")
        example = cloud / "examples" / "basic"
        example_tf = sorted(example.glob("*.tf"))
        self.check(bool(example_tf), where, "missing examples/basic/*.tf")
        calls = []
        for path in example_tf:
            doc = hcl2.loads(path.read_text(encoding="utf-8"))
            calls += [unquote(body.get("source")) for _, body in blocks(doc, "module")]
        self.check("../.." in calls, f"{where}/examples/basic", "does not call the module (source = \"../..\")")


def main():
    default = Path(__file__).resolve().parents[2] / "terraform"
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else default
    checker = Checker(root)
    checker.run()
    for failure in checker.failures:
        print(failure)
    print(f"hcl: {checker.passed} passed, {len(checker.failures)} failed")
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
