"""Reading manifests as a stream, and rewriting their images in the text: everything else stays byte for byte."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from audit.audit_support import FIXTURES, REGISTRY, audit_rules

from webhook.manifests import (
    ManifestError,
    manifest_files,
    open_manifests,
    read_manifests,
    read_text,
    rewrite_text,
    write_atomic,
)

APP = FIXTURES / "manifests" / "app"
REWRITTEN = FIXTURES / "rewritten" / "app"


def read(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as stream:
        return stream.read()


# --- reading ----------------------------------------------------------------------------------------------------


def test_documents_come_with_their_first_line() -> None:
    found = [(item.line, item.data) for item in read_manifests("a: 1\n---\n# c\n\nb: 2\n---\n", "x.yaml")]
    assert found == [(1, {"a": 1}), (5, {"b": 2}), (7, None)]


def test_list_items_are_read_one_by_one_with_the_list_kind() -> None:
    text = "kind: PodList\napiVersion: v1\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\nmetadata: {}\n"
    found = list(read_manifests(text, "pods.yaml"))
    assert [(item.line, item.kind, item.data) for item in found] == [
        (4, "Pod", {"metadata": {"name": "a"}}),
        (5, "Pod", {"metadata": {"name": "b"}}),
        (1, None, {"kind": "PodList", "apiVersion": "v1", "metadata": {}}),
    ]


def test_items_of_a_mapping_that_is_not_a_list_get_no_assumed_kind() -> None:
    text = "kind: Pod\nitems:\n- spec: {containers: [{name: a, image: quay.io/a/b:1}]}\n"
    assert [item.kind for item in read_manifests(text, "odd.yaml")] == [None, None]


def test_kubectl_lists_name_the_kind_after_the_items() -> None:
    # `kubectl get -o yaml` sorts keys: items come before `kind: List`, and each item has its own kind.
    found = list(read_manifests(read(APP / "list.json"), "list.json"))
    assert [(item.line, item.kind, item.data.get("kind")) for item in found if isinstance(item.data, dict)] == [
        (4, None, "DaemonSet"),
        (10, None, "ConfigMap"),
        (1, None, "List"),
    ]


def test_anchors_and_merge_keys_still_decode() -> None:
    text = "base: &b {x: 1}\nitems:\n- <<: *b\n  y: 2\n"
    assert [item.data for item in read_manifests(text, "a.yaml")] == [{"x": 1, "y": 2}, {"base": {"x": 1}}]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("kind: Pod\nspec: [\n", "bad.yaml:3:1"),
        ("kind: Pod\n---\nkind: Deployment\n  metadata: x\n", "bad.yaml:4:11"),
        ("a: 1\n- b\n", "bad.yaml:2:1"),
        ("items:\n- a: 1\n- b: [\n", "bad.yaml:4:1"),
        ("kind: Pod\nspec: !Ref x\n", "bad.yaml:2:7"),
    ],
)
def test_malformed_yaml_names_file_line_and_column(text: str, where: str) -> None:
    with pytest.raises(ManifestError, match=rf"^{where}: not valid YAML: "):
        list(read_manifests(text, "bad.yaml"))


def test_manifest_files_walks_directories_for_manifests_only() -> None:
    files = manifest_files([str(APP), "-"])
    assert [(file.relative, file.path is None) for file in files] == [
        (Path("jobs/nightly.yml"), False),
        (Path("list.json"), False),
        (Path("web.yaml"), False),
        (None, True),
    ]


def test_manifest_files_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope\.yaml: no such file or directory"):
        manifest_files([str(tmp_path / "nope.yaml")])
    with pytest.raises(ManifestError, match=r"no \.yaml, \.yml, \.json files"):
        manifest_files([str(tmp_path)])


# --- rewriting ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web.yaml", "jobs/nightly.yml", "list.json"])
def test_rewrite_changes_only_the_image_strings(name: str) -> None:
    result = rewrite_text(read(APP / name), name, audit_rules())
    assert result.text == read(REWRITTEN / name)
    original_lines, new_lines = result.original.splitlines(keepends=True), result.text.splitlines(keepends=True)
    assert len(original_lines) == len(new_lines)
    changed = {index + 1 for index, (old, new) in enumerate(zip(original_lines, new_lines, strict=True)) if old != new}
    assert changed == {edit.line for edit in result.edits}


def test_rewrite_keeps_comments_quotes_flow_style_and_crlf() -> None:
    result = rewrite_text(read(APP / "web.yaml"), "web.yaml", audit_rules())
    assert f"image: '{REGISTRY}/quay/shop/migrate:2.1'   # single-quoted on purpose\n" in result.text
    assert f'image: "{REGISTRY}/quay/shop/web:2.1"     # double-quoted\n' in result.text
    assert f"image: {{reference: {REGISTRY}/quay/shop/models:2024-10, pullPolicy: IfNotPresent}}\n" in result.text
    assert "image: redis:7.4                 # Docker Hub: tier off, stays\n" in result.text
    assert "    image: quay.io/shop/toolbox:1\n" in result.text  # the pod opted out
    crlf = rewrite_text(
        "kind: Pod\r\nspec:\r\n  containers:\r\n  - image: quay.io/a/b:1 # c\r\n", "p.yaml", audit_rules()
    )
    assert crlf.text == f"kind: Pod\r\nspec:\r\n  containers:\r\n  - image: {REGISTRY}/quay/a/b:1 # c\r\n"


def test_rewritten_json_is_json_with_only_the_images_changed() -> None:
    result = rewrite_text(read(APP / "list.json"), "list.json", audit_rules())
    before, after = json.loads(result.original), json.loads(result.text)
    assert after["items"][0]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"{REGISTRY}/quay/prometheus/node-exporter:v1.8.2"
    )
    after["items"][0]["spec"]["template"]["spec"]["containers"][0]["image"] = "quay.io/prometheus/node-exporter:v1.8.2"
    assert after == before  # the ConfigMap's `image` key is data, not an image


def test_rewrite_agrees_with_the_decision_function() -> None:
    rules = audit_rules()
    result = rewrite_text(read(APP / "web.yaml"), "web.yaml", rules)
    for edit in result.edits:
        assert edit.decision == rules.decide(edit.decision.image)
        assert edit.decision.rewrites


def test_rewrite_is_idempotent() -> None:
    once = rewrite_text(read(APP / "web.yaml"), "web.yaml", audit_rules())
    twice = rewrite_text(once.text, "web.yaml", audit_rules())
    assert not twice.changed
    assert twice.text == once.text


def test_nothing_to_rewrite_returns_the_text_unchanged() -> None:
    text = "# only a comment\n---\nkind: ConfigMap\n"
    result = rewrite_text(text, "c.yaml", audit_rules())
    assert (result.changed, result.text, result.edits) == (False, text, ())


def test_the_same_image_twice_through_an_alias_is_one_edit() -> None:
    text = "kind: Pod\nspec:\n  containers:\n  - {name: a, image: &i quay.io/a/b:1}\n  - {name: b, image: *i}\n"
    with pytest.raises(ManifestError, match=r"p.yaml:4: image 'quay.io/a/b:1' is written with an anchor"):
        rewrite_text(text, "p.yaml", audit_rules())


def test_a_block_scalar_image_is_refused_with_its_line() -> None:
    text = "kind: Pod\nspec:\n  containers:\n  - name: a\n    image: >-\n      quay.io/a/b:1\n"
    with pytest.raises(ManifestError, match=r"^p.yaml:5: image 'quay.io/a/b:1'"):
        rewrite_text(text, "p.yaml", audit_rules())


def test_a_malformed_document_after_good_ones_fails_the_whole_file() -> None:
    text = read(APP / "web.yaml") + "---\nkind: Pod\nspec: {containers: [\n"
    with pytest.raises(ManifestError, match=r"^web.yaml:\d+:\d+: not valid YAML"):
        rewrite_text(text, "web.yaml", audit_rules())


def test_non_ascii_text_before_an_image_keeps_positions_right() -> None:
    text = "# Größe: ü — 東京\nkind: Pod\nspec: {containers: [{name: a, image: quay.io/a/b:1}]}  # ✓\n"
    result = rewrite_text(text, "p.yaml", audit_rules())
    assert result.text == text.replace("quay.io/a/b:1", f"{REGISTRY}/quay/a/b:1")
    assert yaml.safe_load(result.text)["spec"]["containers"][0]["image"] == f"{REGISTRY}/quay/a/b:1"


# --- writing -----------------------------------------------------------------------------------------------------


def test_write_atomic_replaces_whole_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "app.yaml"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o640)
    write_atomic(target, "new\r\n")
    assert target.read_bytes() == b"new\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [path.name for path in tmp_path.iterdir()] == ["app.yaml"]


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "app.yaml"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "new \udcff\n")  # a lone surrogate cannot be encoded: the write fails midway
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["app.yaml"]


def test_write_atomic_creates_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "app.yaml"
    write_atomic(target, "x\n", 0o600)
    assert target.read_text(encoding="utf-8") == "x\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_image_from_a_merge_key_is_rewritten_where_it_is_written() -> None:
    text = "base: &c {name: a, image: quay.io/a/b:1}\nkind: Pod\nspec:\n  containers:\n  - <<: *c\n"
    result = rewrite_text(text, "p.yaml", audit_rules())
    assert [edit.line for edit in result.edits] == [1]
    assert result.text == text.replace("quay.io/", f"{REGISTRY}/quay/")


def test_a_shared_image_one_pod_rewrites_and_another_keeps_is_refused() -> None:
    text = (
        "kind: List\nbase: &c {name: a, image: quay.io/a/b:1}\nitems:\n"
        "- {kind: Pod, spec: {containers: [{<<: *c}]}}\n"
        "- {kind: Pod, metadata: {annotations: {ecr-ptc-webhook/rewrite: disabled}}, spec: {containers: [{<<: *c}]}}\n"
    )
    with pytest.raises(ManifestError, match=r"^p\.yaml: an image shared through an anchor or merge key"):
        rewrite_text(text, "p.yaml", audit_rules())


def test_containers_without_an_image_are_left_alone() -> None:
    text = "kind: Pod\nspec:\n  containers:\n  - name: a\n  - {name: b, image: quay.io/a/b:1}\n"
    result = rewrite_text(text, "p.yaml", audit_rules())
    assert result.text == text.replace("quay.io/", f"{REGISTRY}/quay/")


def test_control_characters_are_a_yaml_error() -> None:
    with pytest.raises(ManifestError, match=r"^c\.yaml: not valid YAML: .*#x0007"):
        list(read_manifests("kind: Pod\nx: \x07\n", "c.yaml"))


def test_files_that_are_not_utf8_or_vanish_are_named(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("# caf\xe9\nkind: Pod\n".encode("latin-1"))
    (file,) = manifest_files([str(latin)])
    with pytest.raises(ManifestError, match=r"latin\.yaml: not UTF-8 text \(invalid continuation byte at byte \d+\)"):
        list(open_manifests(file))
    with pytest.raises(ManifestError, match=r"latin\.yaml: not UTF-8 text"):
        read_text(file)
    latin.unlink()
    with pytest.raises(ManifestError, match=r"latin\.yaml: cannot read: No such file or directory"):
        list(open_manifests(file))
    with pytest.raises(ManifestError, match=r"latin\.yaml: cannot read: No such file or directory"):
        read_text(file)
