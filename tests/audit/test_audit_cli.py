"""``ecr-ptc-webhook audit -f`` and ``rewrite``: output formats, exit codes, and nothing half-written."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from audit.audit_support import FIXTURES, REGISTRY, REPO, Cli, audit_rules, cli_fixture, write_config

from webhook.audit.report import FIELDS
from webhook.cli import main

APP = FIXTURES / "manifests" / "app"
REWRITTEN = FIXTURES / "rewritten" / "app"

cli = cli_fixture()


@pytest.fixture
def config(tmp_path: Path) -> str:
    return str(write_config(tmp_path))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of the fixture tree the test may write into."""
    return Path(shutil.copytree(APP, tmp_path / "app"))


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


# --- audit -------------------------------------------------------------------------------------------------------


def test_audit_table(cli: Cli, config: str) -> None:
    code, out, err = cli("audit", "--config", config, "-f", str(APP))
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines()[1:6]]
    assert rows == [
        ["docker.io", "docker-hub", "1", "1", "0", "tier-disabled=1"],
        ["ghcr.io", "ghcr", "1", "1", "0", "tier-disabled=1"],
        ["quay.io", "-", "1", "1", "0", "pod-opted-out=1"],
        ["quay.io", "quay", "5", "3", "5", "-"],
        ["registry.k8s.io", "k8s", "1", "1", "1", "-"],
    ]
    assert "4 pod specs, 9 image occurrences" in out
    assert "Enable tier ghcr" in out


def test_audit_json_lines_match_explain(cli: Cli, config: str) -> None:
    code, out, _ = cli("audit", "--config", config, "-f", str(APP), "--output", "json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 9
    assert all(tuple(line) == FIELDS for line in lines)
    decided = [line for line in lines if line["reason"] != "pod-opted-out"]  # explain knows images, not pods
    code, explained, _ = cli("explain", "--config", config, "--output", "json", *(line["image"] for line in decided))
    assert code == 0
    explain_keys = ("image", "action", "result", "reason", "tier")
    assert [json.loads(line) for line in explained.splitlines()] == [
        {key: line[key] for key in explain_keys} for line in decided
    ]
    first = lines[0]
    assert first == {
        **audit_rules().decide("ghcr.io/shop/report:1").as_dict(),
        "kind": "CronJob",
        "namespace": None,
        "name": "nightly",
        "container": "report",
        "source": f"{APP / 'jobs' / 'nightly.yml'}:1",
    }


def test_audit_csv(cli: Cli, config: str) -> None:
    code, out, _ = cli("audit", "--config", config, "-f", str(APP / "web.yaml"), "--output", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == FIELDS
    assert [(row["container"], row["reason"]) for row in rows] == [
        ("migrate", "rewritten"),
        ("web", "rewritten"),
        ("proxy", "rewritten"),
        ("cache", "tier-disabled"),
        ("volumes/models", "rewritten"),
        ("shell", "pod-opted-out"),
    ]


def test_audit_reads_stdin(cli: Cli, config: str) -> None:
    text = (APP / "list.json").read_text(encoding="utf-8")
    code, out, _ = cli("audit", "--config", config, "-f", "-", "--output", "json", stdin=text)
    assert code == 0
    (line,) = (json.loads(line) for line in out.splitlines())
    assert (line["kind"], line["name"], line["source"], line["action"]) == (
        "DaemonSet",
        "agent",
        "<stdin>:4",
        "rewrite",
    )


@pytest.mark.parametrize(("fail_on", "code"), [("uncovered", 1), ("tier-disabled", 1), (None, 0)])
def test_fail_on(cli: Cli, config: str, fail_on: str | None, code: int) -> None:
    flags = ["--fail-on", fail_on] if fail_on else []
    result, _, err = cli("audit", "--config", config, "-f", str(APP), *flags)
    assert result == code
    if fail_on:
        assert err == f"ecr-ptc-webhook audit: 2 image occurrences are {fail_on} (--fail-on)\n"


def test_fail_on_passes_when_everything_is_covered(cli: Cli, tmp_path: Path) -> None:
    pod = "kind: Pod\nspec: {containers: [{name: a, image: quay.io/a/b:1}, {name: b, image: public.ecr.aws/x/y:1}]}\n"
    (tmp_path / "pod.yaml").write_text(pod, encoding="utf-8")
    code, _, _ = cli("audit", "--registry", REGISTRY, "-f", str(tmp_path / "pod.yaml"), "--fail-on", "uncovered")
    assert code == 0


def test_audit_of_malformed_yaml_prints_one_line_and_no_partial_output(cli: Cli, config: str, app: Path) -> None:
    (app / "zz-broken.yaml").write_text("kind: Pod\nspec:\n  containers: [\n", encoding="utf-8")
    code, out, err = cli("audit", "--config", config, "-f", str(app), "--output", "json")
    assert code == 2
    assert out == ""  # the good files' lines are held back: no output that looks complete but is not
    assert err == (
        f"ecr-ptc-webhook audit: {app / 'zz-broken.yaml'}:4:1: not valid YAML: "
        "while parsing a flow node did not find expected node content\n"
    )


@pytest.mark.parametrize("flag", ["--namespace", "--exclude-namespace"])
def test_cluster_flags_need_cluster(cli: Cli, config: str, flag: str) -> None:
    code, _, err = cli("audit", "--config", config, "-f", str(APP), flag, "x")
    assert code == 2
    assert "apply to --cluster only" in err


def test_audit_of_a_typed_list_whose_items_come_before_its_kind(cli: Cli, config: str) -> None:
    text = (
        '{"apiVersion":"v1","items":[{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c",'
        '"image":"quay.io/a/b:1"}]}}],"kind":"PodList"}'
    )
    code, out, _ = cli("audit", "--config", config, "-f", "-", "--output", "json", stdin=text)
    assert code == 0
    (line,) = (json.loads(line) for line in out.splitlines())
    assert (line["kind"], line["name"], line["container"], line["action"]) == ("Pod", "a", "c", "rewrite")


def test_audit_of_json_with_an_emoji(cli: Cli, config: str, tmp_path: Path) -> None:
    pod = {
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"note": "shipped \U0001f680"}},
        "spec": {"containers": [{"name": "c", "image": "quay.io/a/b:1"}]},
    }
    (tmp_path / "pod.json").write_text(json.dumps(pod), encoding="utf-8")
    code, out, err = cli("audit", "--config", config, "-f", str(tmp_path / "pod.json"), "--output", "json")
    assert (code, err) == (0, "")
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["rewrite"]


def test_audit_needs_a_source(capsys: pytest.CaptureFixture[str], config: str) -> None:
    with pytest.raises(SystemExit):
        main(["audit", "--config", config])
    assert "one of the arguments --cluster -f/--filename is required" in capsys.readouterr().err


# --- rewrite -----------------------------------------------------------------------------------------------------


def test_rewrite_one_file_to_stdout(cli: Cli, config: str) -> None:
    code, out, err = cli("rewrite", "--config", config, "-f", str(APP / "web.yaml"))
    assert code == 0
    assert out == (REWRITTEN / "web.yaml").read_text(encoding="utf-8")
    assert (
        err.splitlines()[-1] == "ecr-ptc-webhook rewrite: rewrote 4 images in 1 of 1 files"
    )  # after the note on ServiceAccounts not in the input


def test_rewrite_stdin_to_stdout(cli: Cli, config: str) -> None:
    text = (APP / "list.json").read_text(encoding="utf-8")
    code, out, _ = cli("rewrite", "--config", config, "-f", "-", stdin=text)
    assert code == 0
    assert out == (REWRITTEN / "list.json").read_text(encoding="utf-8")


def test_rewrite_a_directory_mirrors_the_tree(cli: Cli, config: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = cli("rewrite", "--config", config, "-f", str(APP), "-o", str(out_dir))
    assert (code, out) == (0, "")
    assert tree(out_dir) == tree(REWRITTEN)  # README.md is not a manifest: not copied
    assert (
        err.splitlines()[-1] == "ecr-ptc-webhook rewrite: rewrote 6 images in 3 of 3 files"
    )  # after the note on ServiceAccounts not in the input


def test_rewrite_one_file_to_a_file_or_into_a_directory(cli: Cli, config: str, tmp_path: Path) -> None:
    target = tmp_path / "new.yaml"
    assert cli("rewrite", "--config", config, "-f", str(APP / "web.yaml"), "-o", str(target))[0] == 0
    assert target.read_bytes() == (REWRITTEN / "web.yaml").read_bytes()
    assert cli("rewrite", "--config", config, "-f", str(APP / "web.yaml"), "-o", str(tmp_path))[0] == 0
    assert (tmp_path / "web.yaml").read_bytes() == (REWRITTEN / "web.yaml").read_bytes()


def test_rewrite_one_file_into_a_new_directory_named_with_a_trailing_slash(
    cli: Cli, config: str, tmp_path: Path
) -> None:
    code, _, _ = cli("rewrite", "--config", config, "-f", str(APP / "web.yaml"), "-o", f"{tmp_path / 'new'}/")
    assert code == 0
    assert tree(tmp_path / "new") == {"web.yaml": (REWRITTEN / "web.yaml").read_bytes()}


def test_rewrite_in_place_through_a_symlink_keeps_the_link(cli: Cli, config: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(APP / "web.yaml", shared / "web.yaml")
    link = tmp_path / "web.yaml"
    link.symlink_to(shared / "web.yaml")
    assert cli("rewrite", "--config", config, "-f", str(link), "-i")[0] == 0
    assert link.is_symlink()
    assert (shared / "web.yaml").read_bytes() == (REWRITTEN / "web.yaml").read_bytes()


def test_check_says_where_an_alias_follows_an_anchor(cli: Cli, config: str, tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(
        "kind: Pod\nspec:\n  containers:\n  - {name: a, image: &i quay.io/a/b:1}\n  - {name: b, image: *i}\n",
        encoding="utf-8",
    )
    code, out, err = cli("rewrite", "--config", config, "-f", str(path), "--check")
    assert code == 1
    new = f"{REGISTRY}/quay/a/b:1"
    assert out == (
        f"{path}:4: quay.io/a/b:1 -> {new}\n{path}:5: quay.io/a/b:1 -> {new} (follows the anchor on line 4)\n"
    )
    assert (
        err.splitlines()[-1] == "ecr-ptc-webhook rewrite: would rewrite 1 images in 1 of 1 files"
    )  # after the note on ServiceAccounts not in the input


def test_rewrite_in_place_touches_only_files_that_change(cli: Cli, config: str, app: Path) -> None:
    (app / "service.yaml").write_text("kind: Service\nmetadata: {name: s}\n", encoding="utf-8")
    before = (app / "service.yaml").stat().st_mtime_ns
    code, _, err = cli("rewrite", "--config", config, "-f", str(app), "-i")
    assert code == 0
    assert tree(app) == {
        **tree(REWRITTEN),
        "README.md": (APP / "README.md").read_bytes(),
        "service.yaml": b"kind: Service\nmetadata: {name: s}\n",
    }
    assert (app / "service.yaml").stat().st_mtime_ns == before
    assert (
        err.splitlines()[-1] == "ecr-ptc-webhook rewrite: rewrote 6 images in 3 of 4 files"
    )  # after the note on ServiceAccounts not in the input


def test_check_lists_changes_writes_nothing_and_exits_1(cli: Cli, config: str, app: Path) -> None:
    before = tree(app)
    code, out, err = cli("rewrite", "--config", config, "-f", str(app), "--check")
    assert code == 1
    assert tree(app) == before
    assert f"{app / 'web.yaml'}:19: quay.io/shop/web:2.1 -> {REGISTRY}/quay/shop/web:2.1\n" in out
    assert len(out.splitlines()) == 6
    assert (
        err.splitlines()[-1] == "ecr-ptc-webhook rewrite: would rewrite 6 images in 3 of 3 files"
    )  # after the note on ServiceAccounts not in the input


def test_check_passes_on_rewritten_manifests(cli: Cli, config: str) -> None:
    code, out, _ = cli("rewrite", "--config", config, "-f", str(REWRITTEN), "--check")
    assert (code, out) == (0, "")


def test_a_malformed_file_means_nothing_is_written(cli: Cli, config: str, app: Path, tmp_path: Path) -> None:
    (app / "zz-broken.yaml").write_text("kind: Pod\nspec:\n  containers: [\n", encoding="utf-8")
    before = tree(app)
    for target in (["-i"], ["-o", str(tmp_path / "out")]):
        code, out, err = cli("rewrite", "--config", config, "-f", str(app), *target)
        assert (code, out) == (2, "")
        assert err.startswith(f"ecr-ptc-webhook rewrite: {app / 'zz-broken.yaml'}:4:1: not valid YAML")
        assert tree(app) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "case",
    [
        ([str(APP)], [], "3 input files: pass -o DIR to mirror them, or -i to rewrite in place"),
        (["-"], ["-i"], "-i/--in-place cannot rewrite stdin"),
        (["-", str(APP / "web.yaml")], ["-o", "{tmp}"], "stdin has no file name"),
        ([str(APP / "web.yaml"), str(APP / "web.yaml")], ["-o", "{tmp}"], "would both be written to"),
    ],
)
def test_rewrite_refuses_unclear_targets(
    cli: Cli, config: str, tmp_path: Path, case: tuple[list[str], list[str], str]
) -> None:
    files, flags, message = case
    arguments = [argument for name in files for argument in ("-f", name)]
    flags = [flag.format(tmp=tmp_path / "out") for flag in flags]
    code, out, err = cli("rewrite", "--config", config, *arguments, *flags, stdin="")
    assert (code, out) == (2, "")
    assert message in err
    assert not (tmp_path / "out").exists()


def test_the_table_in_the_docs_is_real_output(cli: Cli, config: str) -> None:
    docs = (REPO / "docs" / "audit.md").read_text(encoding="utf-8")
    shown = docs.split("```text\n", 1)[1].split("```", 1)[0]
    assert cli("audit", "--config", config, "-f", str(APP))[1] == shown
