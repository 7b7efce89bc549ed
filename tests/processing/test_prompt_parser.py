from __future__ import annotations

import random
from pathlib import Path

import pytest

from modules.core.errors import UserInputError
from modules.processing.prompt_parser import (
    BREAK,
    BREAK_WEIGHT,
    extract_extra_networks,
    parse_attention,
    parse_prompt_schedules,
    prompt_at_step,
    split_composable,
)
from modules.processing.styles import PromptStyle, StyleStore, merge_style_prompt
from modules.processing.wildcards import expand_wildcards


def texts_per_step(prompt: str, steps: int) -> list[str]:
    schedule = parse_prompt_schedules(prompt, steps)
    return [prompt_at_step(schedule, i) for i in range(steps)]


# ---- prompt editing ------------------------------------------------------------------------------------------


def test_fractional_edit_switches_halfway() -> None:
    assert parse_prompt_schedules("a [cat:dog:0.5] sitting", 20) == [(10, "a cat sitting"), (20, "a dog sitting")]
    per_step = texts_per_step("[cat:dog:0.5]", 20)
    assert per_step[:10] == ["cat"] * 10
    assert per_step[10:] == ["dog"] * 10


def test_step_number_edit() -> None:
    assert parse_prompt_schedules("[cat:dog:4]", 20) == [(4, "cat"), (20, "dog")]
    assert texts_per_step("[cat:dog:4]", 20).count("cat") == 4


def test_add_and_remove_forms() -> None:
    assert parse_prompt_schedules("a [dog:5]", 10) == [(5, "a "), (10, "a dog")]
    assert parse_prompt_schedules("a [dog::5]", 10) == [(5, "a dog"), (10, "a ")]
    assert parse_prompt_schedules("a [dog: 0.25 ]", 8) == [(2, "a "), (8, "a dog")]


def test_when_beyond_steps_never_switches() -> None:
    assert parse_prompt_schedules("[cat:dog:50]", 20) == [(20, "cat")]


def test_nested_edits() -> None:
    assert parse_prompt_schedules("[[a:b:3]:c:6]", 10) == [(3, "a"), (6, "b"), (10, "c")]
    assert parse_prompt_schedules("([cat:dog:5]:1.2)", 10) == [(5, "(cat:1.2)"), (10, "(dog:1.2)")]


def test_alternation_changes_every_step() -> None:
    assert texts_per_step("a [cat|dog] photo", 4) == ["a cat photo", "a dog photo", "a cat photo", "a dog photo"]
    assert texts_per_step("[a|b|c]", 5) == ["a", "b", "c", "a", "b"]
    assert texts_per_step("[a|]", 3) == ["a", "", "a"]


def test_alternation_inside_edit() -> None:
    assert texts_per_step("[[cat|dog]:tree:2]", 4) == ["cat", "dog", "tree", "tree"]


def test_plain_and_malformed_text_is_kept() -> None:
    assert parse_prompt_schedules("a plain prompt", 20) == [(20, "a plain prompt")]
    assert parse_prompt_schedules("[a:b]", 10) == [(10, "[a:b]")]
    assert parse_prompt_schedules("oops [a:b:5", 10) == [(10, "oops [a:b:5")]
    assert parse_prompt_schedules("x] (y [z:w:2]", 4) == [(2, "x] (y z"), (4, "x] (y w")]


def test_escapes_are_preserved() -> None:
    assert parse_prompt_schedules(r"\[cat:dog:5\] \(x\:1\)", 10) == [(10, r"\[cat:dog:5\] \(x\:1\)")]


# ---- composable ----------------------------------------------------------------------------------------------


def test_split_composable() -> None:
    assert split_composable("a cat :1.2 AND a dog :0.5") == [("a cat", 1.2), ("a dog", 0.5)]
    assert split_composable("a cat AND a dog") == [("a cat", 1.0), ("a dog", 1.0)]
    assert split_composable("sand AND land and more") == [("sand", 1.0), ("land and more", 1.0)]
    assert split_composable(" plain prompt ") == [(" plain prompt ", 1.0)]
    assert split_composable("(cat:1.2)") == [("(cat:1.2)", 1.0)]


# ---- attention -----------------------------------------------------------------------------------------------


def test_attention_weights() -> None:
    assert parse_attention("a (b) c") == [("a ", 1.0), ("b", pytest.approx(1.1)), (" c", 1.0)]
    assert parse_attention("((b))") == [("b", pytest.approx(1.21))]
    assert parse_attention("[b]") == [("b", pytest.approx(1 / 1.1))]
    assert parse_attention("(b:1.3)") == [("b", 1.3)]
    assert parse_attention("(b: 0.5 )") == [("b", 0.5)]
    assert parse_attention("((b:2))") == [("b", pytest.approx(2.2))]
    assert parse_attention("[(b:1.5)]") == [("b", pytest.approx(1.5 / 1.1))]


def test_attention_escapes_and_plain_text() -> None:
    assert parse_attention(r"\(b\) \[c\] a\:b \\") == [(r"(b) [c] a:b \ ".rstrip(), 1.0)]
    assert parse_attention("a photo, of: things") == [("a photo, of: things", 1.0)]


def test_attention_unbalanced() -> None:
    assert parse_attention("a b)") == [("a b)", 1.0)]
    assert parse_attention("a (b") == [("a ", 1.0), ("b", pytest.approx(1.1))]
    assert parse_attention("a [b") == [("a ", 1.0), ("b", pytest.approx(1 / 1.1))]
    assert parse_attention("(b:x)") == [("b:x", pytest.approx(1.1))]
    assert parse_attention("") == [("", 1.0)]
    assert parse_attention("()") == [("", 1.0)]


def test_break_is_a_marker() -> None:
    assert parse_attention("a BREAK b") == [("a", 1.0), (BREAK, BREAK_WEIGHT), ("b", 1.0)]
    assert parse_attention("(a BREAK b:1.5)") == [("a", 1.5), (BREAK, BREAK_WEIGHT), ("b", 1.5)]
    assert parse_attention("BREAKFAST break") == [("BREAKFAST break", 1.0)]


def test_adjacent_equal_weights_merge() -> None:
    assert parse_attention("(a)(b) c") == [("ab", pytest.approx(1.1)), (" c", 1.0)]


# ---- extra networks ------------------------------------------------------------------------------------------


def test_extract_extra_networks() -> None:
    text, refs = extract_extra_networks("a cat <lora:style:0.7>, <lora:other:0.2:0.9> <hypernet:h:0.3> x")
    assert text == "a cat ,   x"
    assert [(r.kind, r.name) for r in refs] == [("lora", "style"), ("lora", "other"), ("hypernet", "h")]
    assert (refs[0].te_multiplier, refs[0].unet_multiplier) == (0.7, 0.7)
    assert (refs[1].te_multiplier, refs[1].unet_multiplier) == (0.2, 0.9)
    assert refs[2].multiplier == 0.3


def test_extra_network_defaults_and_named_args() -> None:
    _, refs = extract_extra_networks("<lora:a> <lora:b:te=0.1:unet=0.6:dyn=8>")
    assert refs[0].multiplier == 1.0
    assert (refs[1].te_multiplier, refs[1].unet_multiplier, refs[1].named["dyn"]) == (0.1, 0.6, "8")


def test_extra_network_kind_filter_and_bad_number() -> None:
    text, refs = extract_extra_networks("<lora:a:1> <foo:b:1>", kinds=["lora"])
    assert text == " <foo:b:1>" and len(refs) == 1
    _, refs = extract_extra_networks("<lora:a:lots>")
    with pytest.raises(UserInputError):
        _ = refs[0].multiplier


# ---- wildcards -----------------------------------------------------------------------------------------------


def test_wildcards(tmp_path: Path) -> None:
    (tmp_path / "animal.txt").write_text("cat\n\n# comment\ndog\n", encoding="utf-8")
    (tmp_path / "colors").mkdir()
    (tmp_path / "colors" / "warm.txt").write_text("red __animal__\n", encoding="utf-8")
    rng = random.Random(1)
    seen = {expand_wildcards("a __animal__", tmp_path, rng) for _ in range(30)}
    assert seen == {"a cat", "a dog"}
    assert expand_wildcards("__colors/warm__!", tmp_path, rng) in {"red cat!", "red dog!"}
    assert expand_wildcards("a __missing__ b", tmp_path, rng) == "a __missing__ b"
    assert expand_wildcards("__../secret__", tmp_path, rng) == "__../secret__"


def test_wildcards_are_reproducible_and_bounded(tmp_path: Path) -> None:
    (tmp_path / "loop.txt").write_text("x __loop__\n", encoding="utf-8")
    (tmp_path / "n.txt").write_text("\n".join(str(i) for i in range(100)), encoding="utf-8")
    assert expand_wildcards("__n__ __n__", tmp_path, random.Random(7)) == expand_wildcards(
        "__n__ __n__", tmp_path, random.Random(7)
    )
    assert expand_wildcards("__loop__", tmp_path, random.Random(0), max_depth=3) == "x x x __loop__"


# ---- styles --------------------------------------------------------------------------------------------------


def test_merge_style_prompt() -> None:
    assert merge_style_prompt("masterpiece", "a cat") == "a cat, masterpiece"
    assert merge_style_prompt("photo of {prompt}, 4k", "a cat") == "photo of a cat, 4k"
    assert merge_style_prompt("masterpiece", "") == "masterpiece"
    assert merge_style_prompt("", "a cat") == "a cat"


def test_styles_apply_save_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    store = StyleStore(path)
    store.set(PromptStyle("Cinema", "cinematic {prompt}, film grain", "blurry"))
    store.set(PromptStyle("HQ, best", 'masterpiece, "quoted"', "lowres"))
    store.save()

    loaded = StyleStore.load(path)
    assert loaded.names() == ["Cinema", "HQ, best"]
    assert loaded.get("HQ, best") == PromptStyle("HQ, best", 'masterpiece, "quoted"', "lowres")
    prompt, negative = loaded.apply_styles("a cat", "ugly", ["Cinema", "HQ, best", "missing"])
    assert prompt == 'cinematic a cat, film grain, masterpiece, "quoted"'
    assert negative == "ugly, blurry, lowres"

    names, original, original_negative = loaded.extract_styles(prompt, negative)
    assert (names, original, original_negative) == (["Cinema", "HQ, best"], "a cat", "ugly")

    assert loaded.delete("Cinema") and not loaded.delete("Cinema")
    loaded.save()
    assert StyleStore.load(path).names() == ["HQ, best"]
    assert not list(tmp_path.glob(".*tmp"))


def test_styles_read_a1111_file(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_text('\ufeffname,text,negative_prompt\n"Old",old style,\n,no name,\n', encoding="utf-8")
    store = StyleStore.load(path)
    assert store.names() == ["Old"]
    assert store.apply_styles("x", "", ["Old"]) == ("x, old style", "")
    assert len(StyleStore.load(tmp_path / "absent.csv")) == 0
