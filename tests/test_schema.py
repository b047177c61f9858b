"""The JSON Schema editors' tools read agrees with `check`, and init/new wire it into a project.

YAML is read here as the YAML language server reads it (YAML 1.2: `2026-12-16` and `09:00` stay
text, only true/false are booleans), not as PyYAML's 1.1 defaults would.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from utskick import schema as schemas

from conftest import ROOT, Run

EXAMPLES = sorted((ROOT / "issues").glob("*.yaml")) + sorted((ROOT / "tests" / "seeds").glob("*.yaml"))
VALIDATORS = [jsonschema.Draft202012Validator, jsonschema.Draft7Validator]  # 7: older language servers


class Yaml12(yaml.SafeLoader):
    """PyYAML with YAML 1.2's core schema for plain scalars (no dates, no sexagesimal, no yes/no)."""


Yaml12.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[1] in ("null", "merge", "str")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
Yaml12.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"), list("-+.0123456789"))


def errors(kind: schemas.Kind, text: str, validator: Any = jsonschema.Draft202012Validator) -> list[str]:
    """What the schema finds wrong with a YAML text, as 'path: message' lines."""
    checker = validator(schemas.schema(kind), format_checker=validator.FORMAT_CHECKER)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in checker.iter_errors(yaml.load(text, Yaml12))]


@pytest.mark.parametrize("kind", schemas.KINDS)
def test_schema_command_prints_a_valid_2020_12_schema_in_swedish(run: Run, kind: schemas.Kind) -> None:
    result = run("schema", kind)
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == schemas.schema(kind)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(printed)
    described = [printed["properties"]] + [d["properties"] for d in printed["$defs"].values()]
    for properties in described:
        for name, field in properties.items():
            assert "Exempel: " in field.get("description", ""), f"{name} has no Swedish description with an example"


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_and_seed_issue_is_valid(source: Path, validator: Any) -> None:
    assert errors("issue", source.read_text("utf-8"), validator) == []


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
def test_the_example_settings_are_valid(validator: Any) -> None:
    assert errors("settings", (ROOT / "newsletter.yaml").read_text("utf-8"), validator) == []


ISSUE_MISTAKES = [
    ("a misspelled key", "  title: Ett år av gemensamma steg", "  titel: Ett år av gemensamma steg"),
    ("a missing title", "      - title: Nytt stöd för unga som varken jobbar eller studerar\n        body:", "      - body:"),
    ("a missing subject", "subject: Nytt från Sjölandet – december 2026\n", ""),
    ("a number that is text", "    width: 552\n    credit", "    width: bred\n    credit"),
    ("a date that is no date", "      date: 2027-01-14", "      date: 14 januari"),
    ("a mapping for a list", "lists: [medlemmar]", "lists: {medlemmar: ja}"),
    ("a list for a mapping", "  signature:\n    name: Karin Holmqvist\n    role: Förbundsdirektör",
     "  signature:\n    - Karin Holmqvist"),
]
SETTINGS_MISTAKES = [
    ("a misspelled key", "accent_color:", "accent_colour:"),
    ("a missing name", "name: Sjölandets kommunalförbund\n", ""),
    ("a number that is text", "  concurrency: 4", "  concurrency: fyra"),
    ("no way to unsubscribe", "  url: https://www.sjolandet.example/avregistrera?token={token}\n"
     "  mailto: avregistrera@sjolandet.example\n", "  {}\n"),
    ("an unknown language", "language: sv", "language: fi"),
]


@pytest.mark.parametrize(("what", "old", "new"), ISSUE_MISTAKES, ids=[m[0] for m in ISSUE_MISTAKES])
def test_what_check_rejects_in_an_issue_the_schema_rejects(project: Path, run: Run, what: str, old: str, new: str) -> None:
    path = project / "issues" / "2026-12.yaml"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")
    assert run("check", "2026-12").exit_code == 1, f"check accepts {what}"
    assert errors("issue", path.read_text("utf-8")), f"the schema accepts {what}"


@pytest.mark.parametrize(("what", "old", "new"), SETTINGS_MISTAKES, ids=[m[0] for m in SETTINGS_MISTAKES])
def test_what_check_rejects_in_settings_the_schema_rejects(project: Path, run: Run, what: str, old: str, new: str) -> None:
    path = project / "newsletter.yaml"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")
    assert run("check", "2026-10").exit_code == 1, f"check accepts {what}"
    assert errors("settings", path.read_text("utf-8")), f"the schema accepts {what}"


def modeline_target(yaml_file: Path) -> Path:
    first = yaml_file.read_text("utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    relative = first.split("=", 1)[1]
    assert not Path(relative).is_absolute() and relative.startswith(("./", "../"))
    return (yaml_file.parent / relative).resolve()


def test_init_wires_the_schemas_for_the_editor(tmp_path: Path, run: Run) -> None:
    project = tmp_path / "proj"
    assert run("init", str(project)).exit_code == 0
    settings, issue = project / "schemas" / "newsletter.schema.json", project / "schemas" / "issue.schema.json"
    assert json.loads(settings.read_text("utf-8")) == schemas.schema("settings")
    assert json.loads(issue.read_text("utf-8")) == schemas.schema("issue")
    assert modeline_target(project / "newsletter.yaml") == settings.resolve()
    (written,) = (project / "issues").glob("*.yaml")
    assert modeline_target(written) == issue.resolve()
    mapping = json.loads((project / ".vscode" / "settings.json").read_text("utf-8"))["yaml.schemas"]
    assert {(project / k).resolve(): v for k, v in mapping.items()} == {
        settings.resolve(): "newsletter.yaml", issue.resolve(): "issues/*.yaml"}
    assert errors("settings", (project / "newsletter.yaml").read_text("utf-8")) == []
    result = run("--config", str(project / "newsletter.yaml"), "check", str(written))
    assert result.exit_code == 0 and "schemas/" not in result.output, result.output


def test_init_keeps_an_existing_vscode_settings_file(tmp_path: Path, run: Run) -> None:
    mine = tmp_path / "proj" / ".vscode" / "settings.json"
    mine.parent.mkdir(parents=True)
    mine.write_text('{"editor.tabSize": 2}\n', "utf-8")
    result = run("init", str(tmp_path / "proj"))
    assert result.exit_code == 0
    assert mine.read_text("utf-8") == '{"editor.tabSize": 2}\n'
    assert '"yaml.schemas"' in result.output


def test_new_starts_with_the_modeline_and_brings_the_schemas(project: Path, run: Run) -> None:
    assert run("new", "2027-01").exit_code == 0
    new = project / "issues" / "2027-01.yaml"
    assert modeline_target(new) == (project / "schemas" / "issue.schema.json").resolve()
    assert errors("issue", new.read_text("utf-8")) == []
    assert run("check", "2027-01").exit_code == 0


def test_check_warns_when_the_project_copies_are_older(project: Path, run: Run) -> None:
    assert run("schema", "issue", "-o", "schemas/issue.schema.json").exit_code == 0
    assert "schemas/" not in run("check", "2026-10").stderr
    path = project / "schemas" / "issue.schema.json"
    old = schemas.schema("issue")
    del old["$defs"]["Article"]["properties"]["kicker"]  # as if written before 'kicker' existed
    old["$comment"] = "utskick 0.0.1: `utskick schema issue` writes it"
    path.write_text(json.dumps(old), "utf-8")
    result = run("check", "2026-10")
    assert result.exit_code == 0
    assert re.search(r"schemas/issue\.schema\.json: warning: older than the installed utskick .*"
                     r"utskick schema issue -o schemas/issue\.schema\.json", result.stderr), result.stderr
    shutil.rmtree(project / "schemas")
    assert "schemas/" not in run("check", "2026-10").stderr  # a project without copies is fine
