"""Reading manifests as a stream, and rewriting their images in the text: everything else stays byte for byte."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
import yaml
from audit.audit_support import FIXTURES, REGISTRY, audit_rules
from hypothesis import given
from hypothesis import strategies as st

from webhook.audit.manifests import (
    ManifestError,
    _Unpaired,
    manifest_files,
    open_manifests,
    read_manifests,
    read_text,
    rewrite_text,
    unpair,
    write_atomic,
)
from webhook.core.workloads import workloads

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


def test_items_of_a_kind_that_is_not_a_list_are_data() -> None:
    text = "kind: Pod\nitems:\n- spec: {containers: [{name: a, image: quay.io/a/b:1}]}\n"
    (found,) = read_manifests(text, "odd.yaml")
    assert found.data == {"kind": "Pod", "items": [{"spec": {"containers": [{"name": "a", "image": "quay.io/a/b:1"}]}}]}


@pytest.mark.parametrize("order", ["kind first", "kind last", "no kind"])
def test_items_of_a_configmap_or_custom_resource_are_not_objects(order: str) -> None:
    deployment = (
        "{kind: Deployment, metadata: {name: d}, spec: {template: {spec: {containers: [{image: quay.io/a/b:1}]}}}}"
    )
    kind = {"kind first": "kind: ConfigMap\n", "kind last": "", "no kind": ""}[order]
    after = "kind: Widget\n" if order == "kind last" else ""
    text = f"apiVersion: example.com/v1\n{kind}items:\n- {deployment}\n{after}metadata: {{name: w}}\n"
    (found,) = read_manifests(text, "w.yaml")  # one object, its items inside it
    assert isinstance(found.data, dict)
    assert found.data["items"][0]["kind"] == "Deployment"
    assert found.line == 1
    with io.StringIO(text) as stream:  # streamed: the same object
        assert [(item.line, item.data) for item in read_manifests(stream, "w.yaml")] == [(1, found.data)]
    assert list(workloads(found.data, (), found.kind)) == []
    assert not rewrite_text(text, "w.yaml", audit_rules()).changed


@pytest.mark.parametrize("indent", [None, 2])
def test_a_typed_list_with_items_before_its_kind_takes_the_kind_from_the_list(indent: int | None) -> None:
    # `jq -S` and the Python client sort keys: `items` comes before `kind: PodList`, and the items carry no kind.
    listed = {
        "apiVersion": "v1",
        "items": [{"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "quay.io/a/b:1"}]}}],
        "kind": "PodList",
    }
    text = json.dumps(listed, indent=indent)
    found = list(read_manifests(text, "pods.json"))
    assert [(item.kind, item.data) for item in found] == [
        ("Pod", listed["items"][0]),
        (None, {"apiVersion": "v1", "kind": "PodList"}),
    ]
    result = rewrite_text(text, "pods.json", audit_rules())
    assert result.text == text.replace("quay.io/", f"{REGISTRY}/quay/")
    with io.StringIO(text) as stream:
        assert [item.kind for item in read_manifests(stream, "pods.json")] == ["Pod", None]


def test_kubectl_lists_name_the_kind_after_the_items() -> None:
    # `kubectl get -o yaml` sorts keys: items come before `kind: List`, and each item has its own kind.
    found = list(read_manifests(read(APP / "list.json"), "list.json"))
    assert [(item.line, item.kind, item.data.get("kind")) for item in found if isinstance(item.data, dict)] == [
        (4, None, "DaemonSet"),
        (10, None, "ConfigMap"),
        (1, None, "List"),
    ]


def test_anchors_and_merge_keys_still_decode() -> None:
    text = "kind: List\nbase: &b {x: 1}\nitems:\n- <<: *b\n  y: 2\n"
    found = [item.data for item in read_manifests(text, "a.yaml")]
    assert found == [{"x": 1, "y": 2}, {"kind": "List", "base": {"x": 1}}]
    held = "base: &b {x: 1}\nitems:\n- <<: *b\n  y: 2\nkind: List\n"  # items held until the kind is known
    found = [item.data for item in read_manifests(held, "a.yaml")]
    assert found == [{"x": 1, "y": 2}, {"base": {"x": 1}, "kind": "List"}]
    data = "base: &b {x: 1}\nitems:\n- <<: *b\n  y: 2\n"  # no kind: data after all
    assert [item.data for item in read_manifests(data, "a.yaml")] == [{"base": {"x": 1}, "items": [{"x": 1, "y": 2}]}]


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
    result = rewrite_text(text, "p.yaml", audit_rules())
    assert result.text == text.replace("&i quay.io/", f"&i {REGISTRY}/quay/")
    (edit,) = result.edits
    assert (edit.line, edit.aliases) == (4, (5,))  # line 5 follows the anchor


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("&img quay.io/a/b:1", f"&img {REGISTRY}/quay/a/b:1"),
        ("!!str quay.io/a/b:1", f"!!str {REGISTRY}/quay/a/b:1"),
        ('!!str "quay.io/a/b:1"', f'!!str "{REGISTRY}/quay/a/b:1"'),
        ("&img !!str 'quay.io/a/b:1'", f"&img !!str '{REGISTRY}/quay/a/b:1'"),
        ("!<tag:yaml.org,2002:str> &i quay.io/a/b:1", f"!<tag:yaml.org,2002:str> &i {REGISTRY}/quay/a/b:1"),
        ("! quay.io/a/b:1", f"! {REGISTRY}/quay/a/b:1"),
        ("!!str\n      quay.io/a/b:1", f"!!str\n      {REGISTRY}/quay/a/b:1"),
    ],
)
def test_an_image_with_its_own_anchor_or_tag_is_rewritten_after_them(written: str, expected: str) -> None:
    text = f"kind: Pod\nspec:\n  containers:\n  - name: a\n    image: {written}\n"
    result = rewrite_text(text, "p.yaml", audit_rules())
    assert result.text == text.replace(written, expected)
    assert [edit.line for edit in result.edits] == [5 + written.count("\n")]


def test_an_alias_of_an_anchor_outside_the_pods_follows_it() -> None:
    text = (
        "kind: List\nx-image: &img quay.io/a/b:1\nitems:\n"
        "- kind: Pod\n  spec:\n    containers:\n    - {name: a, image: *img}\n"
        "- kind: Pod\n  spec:\n    containers:\n    - {name: b, image: *img}\n"
    )
    result = rewrite_text(text, "p.yaml", audit_rules())
    assert result.text == text.replace("&img quay.io/", f"&img {REGISTRY}/quay/")
    (edit,) = result.edits
    assert (edit.line, edit.aliases) == (2, (7, 11))


def test_an_anchored_image_one_pod_rewrites_and_another_keeps_is_refused() -> None:
    text = (
        "kind: List\nitems:\n- {kind: Pod, spec: {containers: [{name: a, image: &i quay.io/a/b:1}]}}\n"
        "- {kind: Pod, metadata: {annotations: {ecr-ptc-webhook/rewrite: disabled}},\n"
        "   spec: {containers: [{image: *i}]}}\n"
    )
    with pytest.raises(ManifestError, match=r"^p\.yaml: an image shared through an anchor"):
        rewrite_text(text, "p.yaml", audit_rules())


def test_a_bom_is_kept_and_the_image_rewritten_in_place() -> None:
    for text in (
        "\ufeffkind: Pod\nspec: {containers: [{name: a, image: quay.io/a/b:1}]}\n",
        '\ufeff{"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "quay.io/a/b:1"}]}}\n',
    ):
        result = rewrite_text(text, "p.yaml", audit_rules())
        assert result.text == text.replace("quay.io/", f"{REGISTRY}/quay/")
        (edit,) = result.edits
        assert result.original[edit.start : edit.end].strip('"') == "quay.io/a/b:1"


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


def test_write_atomic_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "app.yaml"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o640)
    link = tmp_path / "app.yaml"
    link.symlink_to(Path("real") / "app.yaml")
    write_atomic(link, "new\n")
    assert link.is_symlink()
    assert link.readlink() == Path("real") / "app.yaml"
    assert target.read_text(encoding="utf-8") == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(path.name for path in (tmp_path / "real").iterdir()) == ["app.yaml"]


# --- JSON with surrogate-pair escapes ---------------------------------------------------------------------------

EMOJI_POD = {
    "kind": "Pod",
    "metadata": {"name": "p", "annotations": {"note": '\U0001f600 d\u00e9j\u00e0 \\ud83d "\\\\"'}},
    "spec": {"containers": [{"name": "a", "image": "quay.io/a/b:1"}]},
}


@pytest.mark.parametrize("indent", [None, 2])
def test_json_with_surrogate_pair_escapes_is_read(indent: int | None) -> None:
    text = json.dumps(EMOJI_POD, indent=indent)  # json.dumps writes the emoji as "\ud83d\ude00"
    assert "\\ud83d\\ude00" in text
    (found,) = read_manifests(text, "p.json")
    assert found.data == EMOJI_POD
    with io.StringIO(text) as stream:
        (found,) = read_manifests(stream, "p.json")
    assert found.data == EMOJI_POD


def test_json_with_surrogate_pair_escapes_is_rewritten_only_in_the_image() -> None:
    text = json.dumps({"kind": "List", "items": [EMOJI_POD, EMOJI_POD]}, indent=2)
    result = rewrite_text(text, "p.json", audit_rules())
    assert result.text == text.replace('"quay.io/', f'"{REGISTRY}/quay/')
    lines = [number for number, line in enumerate(text.splitlines(), 1) if "quay.io/" in line]
    assert [edit.line for edit in result.edits] == lines
    assert len(lines) == 2
    assert [result.original[edit.start : edit.end] for edit in result.edits] == [json.dumps("quay.io/a/b:1")] * 2


def test_yaml_backslashes_are_text_not_escapes() -> None:
    text = "kind: Pod\nmetadata: {name: p, annotations: {a: \\ud83d\\ude00, b: '\\ud83d\\ude00'}}\n"
    assert unpair(text) == (text, [])
    (found,) = read_manifests(text, "p.yaml")
    assert found.data == {
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"a": "\\ud83d\\ude00", "b": "\\ud83d\\ude00"}},
    }


class Chunked(io.StringIO):
    """A stream that hands out at most ``size`` characters a read, however many are asked for."""

    def __init__(self, text: str, size: int) -> None:
        super().__init__(text)
        self.size = size

    def read(self, size: int | None = -1, /) -> str:
        return super().read(self.size if size is None or size < 0 else min(size, self.size))


@given(
    st.lists(
        st.sampled_from(["\U0001f600", "\\", "\\u", "d83d", "\\ud83d", "\ud83d", "é", "a", '"', "\n"]), max_size=40
    ),
    st.integers(min_value=1, max_value=30),
)
def test_surrogate_pairs_are_converted_across_any_chunk_boundary(parts: list[str], size: int) -> None:
    value = "".join(parts)
    text = json.dumps({"kind": "ConfigMap", "data": {"v": value}})
    stream = _Unpaired(Chunked(text, size))
    converted = "".join(iter(lambda: stream.read(size), ""))
    assert converted == unpair(text)[0]
    if not any(0xD800 <= ord(char) <= 0xDFFF for char in value):  # lone surrogates are not YAML, as before
        (found,) = read_manifests(Chunked(text, size), "v.json")
        assert found.data == {"kind": "ConfigMap", "data": {"v": value}}
