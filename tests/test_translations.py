"""Every user-facing string is translated into zh-Hans and zh-Hant (and present in en).

Strings are extracted from the source itself (gettext calls with a literal, and
``{% translate %}`` / ``{% blocktranslate %}`` in templates) and looked up in the compiled
catalogues, so a new string without a translation fails here.
"""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest

import simtopup

SRC = Path(simtopup.__file__).parent
LOCALE = SRC / "locale"
GETTEXT_NAMES = {
    "_",
    "gettext",
    "gettext_lazy",
    "pgettext",
    "pgettext_lazy",
    "ngettext",
    "ngettext_lazy",
}
TEMPLATE_TAG = re.compile(r"""{%\s*(?:translate|trans)\s+(["'])(.+?)\1""")
BLOCK_TAG = re.compile(r"{%\s*blocktranslate[^%]*%}(.+?){%\s*endblocktranslate\s*%}", re.S)


def python_messages() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in GETTEXT_NAMES
            ):
                index = 1 if node.func.id.startswith("pgettext") else 0
                if (
                    len(node.args) > index
                    and isinstance(node.args[index], ast.Constant)
                    and isinstance(node.args[index].value, str)
                ):
                    message = node.args[index].value
                    context = node.args[0] if index else None
                    if isinstance(context, ast.Constant) and isinstance(context.value, str):
                        # A catalogue keys a message with a context as "context\x04message".
                        message = f"{context.value}\x04{message}"
                    found.add(message)
    return found


def template_messages() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("templates/**/*.html"):
        text = path.read_text()
        found.update(m.group(2) for m in TEMPLATE_TAG.finditer(text))
        found.update(
            # Django stores ``{{ name }}`` of a blocktranslate as ``%(name)s``.
            re.sub(r"{{\s*(\w+)\s*}}", r"%(\1)s", " ".join(m.group(1).split()))
            for m in BLOCK_TAG.finditer(text)
            if "{%" not in m.group(1)
        )
    return found


MESSAGES = sorted(python_messages() | template_messages())


def catalogue(language: str) -> dict[str, str]:
    path = LOCALE / language / "LC_MESSAGES" / "django.mo"
    assert path.exists(), f"no compiled catalogue for {language}: run `make messages`"
    with path.open("rb") as f:
        raw = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    # Plural entries are keyed (msgid, n): the singular form stands for the message.
    found = dict(raw)
    found.update(
        (key[0], text) for key, text in raw.items() if isinstance(key, tuple) and key[1] == 0
    )
    return found


def test_there_are_messages_to_translate() -> None:
    assert len(MESSAGES) > 20


@pytest.mark.parametrize("language", ["zh_Hans", "zh_Hant"])
def test_every_message_is_translated_into_chinese(language: str) -> None:
    cat = catalogue(language)
    missing = [m for m in MESSAGES if not cat.get(m)]
    assert missing == [], f"{len(missing)} untranslated in {language}: {missing[:10]}"
    not_chinese = [m for m in MESSAGES if not re.search(r"[\u4e00-\u9fff]", cat[m])]
    assert not_chinese == [], f"{language} translations without Chinese text: {not_chinese[:10]}"


def test_traditional_differs_from_simplified_where_it_should() -> None:
    hans, hant = catalogue("zh_Hans"), catalogue("zh_Hant")
    # 余额/餘額, 设备/設備 … a Traditional catalogue that is a copy of the Simplified one is wrong.
    same = [
        m
        for m in MESSAGES
        if hans.get(m) == hant.get(m) and re.search("[余设额号码卡据]", hans.get(m, ""))
    ]
    assert same == []


def test_placeholders_survive_translation() -> None:
    for language in ("zh_Hans", "zh_Hant"):
        cat = catalogue(language)
        for message in MESSAGES:
            wanted = sorted(re.findall(r"%\(\w+\)s", message))
            assert sorted(re.findall(r"%\(\w+\)s", cat.get(message, ""))) == wanted, (
                language,
                message,
            )
