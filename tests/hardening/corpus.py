"""The corpus of bad inputs: recipe files, params files, images, masks, templates, CLI usage.

Each case is a set of files written into an empty directory, the arguments of one CLI command
(``run`` by default, against the module's emulator), and a regular expression its stderr must
match: the file and line (or the input) and what is wrong. Every case must end with exit 2,
no traceback and no request at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .helpers import (
    FAKE_KEY,
    SIGNED_QUERY,
    crafted_png,
    data_uri,
    jpeg_bytes,
    png_bytes,
    random_bytes,
)


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # a regex searched in stderr
    files: dict[str, str | bytes] = field(default_factory=dict)
    #: The command line after ``wanrecipe``; ``{base_url}`` is the emulator's.
    args: tuple[str, ...] = ("run", "recipe.yaml", "--base-url", "{base_url}")
    #: Text that must NOT appear in stdout or stderr (a secret given in the input).
    never: tuple[str, ...] = ()


OK_PNG = png_bytes()
OK_JPEG = jpeg_bytes()

# Line numbers of the base recipe below: image 6, prompt 7, parameters 8, outputs.final 10.
LINES = {"image": 6, "prompt": 7, "strength": 8, "final": 10}


def q(text: str) -> str:
    """A YAML single-quoted scalar."""
    return "'" + text.replace("'", "''") + "'"


def recipe(
    *,
    image: str = "ok.png",
    prompt: str = "a photo",
    strength: str = "0.5",
    final: str = q("{{ steps.c.image }}"),
    name: str = "hard",
    head: str = "",
) -> str:
    return (
        f"version: 1\nname: {name}\nsteps:\n  c:\n    function: stylization_all\n"
        f"    image: {image}\n    prompt: {prompt}\n    parameters: {{strength: {strength}}}\n"
        f"outputs:\n  final: {final}\n{head}"
    )


def masked(mask: str = "mask.png", image: str = "ok.png") -> str:
    # image on line 6, mask on line 7
    return (
        "version: 1\nname: hard\nsteps:\n  c:\n    function: description_edit_with_mask\n"
        f"    image: {image}\n    mask: {mask}\n    prompt: a red door\n"
    )


def with_ok(**files: str | bytes) -> dict[str, str | bytes]:
    return {"ok.png": OK_PNG, **files}


CASES: list[Case] = []


def add(case_id: str, expect: str, files: dict[str, str | bytes], **kw: object) -> None:
    CASES.append(Case(case_id, expect, files, **kw))  # type: ignore[arg-type]


# -- templates that hang, blow up memory or crash, in every position -----------------------

LIMITS = {
    "mul-1e9": ('{{ "a" * 10**9 }}', "template limit: a string of more than 1,000,000"),
    "pow-huge": ("{{ 10 ** 100000 }}", "template limit: an exponent that large"),
    "range-nested-3": (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}x",
        r"template limit: rendering took more than",
    ),
    "lipsum-1e6": ("{{ lipsum(10**6) }}", r"template limit: lipsum\(\) paragraphs"),
    "macro-recursive": (
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "template limit: calls nested more than",
    ),
    "concat-chain-1e8": (
        '{% set a = "a" * 10**6 %}{% set b = a ~ a ~ a ~ a %}{{ b ~ b }}',
        "template limit: a string of more than",
    ),
}
POSITIONS = {
    "prompt": ("prompt", "steps.c.prompt"),
    "parameters": ("strength", "steps.c.parameters.strength"),
    "image": ("image", "steps.c.image"),
    "outputs": ("final", "outputs.final"),
}
for lim_id, (template, message) in LIMITS.items():
    for pos_id, (field_name, dotted) in POSITIONS.items():
        if pos_id == "parameters" and "{%" in template:
            # A number field takes a {{ expression }} only: refused before rendering.
            message = f"(?:{message}|expected a number, got)"
        add(
            f"template-{lim_id}-in-{pos_id}",
            rf"recipe\.yaml:{LINES[field_name]}:\d+: error: {dotted}: {message}",
            with_ok(**{"recipe.yaml": recipe(**{field_name: q(template)})}),
        )

PROMPT_TEMPLATES = {
    "exponential-macro": (
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(30) }}",
        "template limit: rendering took more than",
    ),
    "range-1e9": ("{{ range(10**9) | list | length }}", r"template limit: range\(\) of"),
    "list-mul": ("{{ [1] * 10**9 }}", "template limit: a list of more than"),
    "join-bomb": ('{{ (["x" * 1000] * 10000) | join }}', "template limit: a string of more"),
    "center-filter": ('{{ "a" | center(10**9) }}', "template limit: filter 'center' argument"),
    "center-method": ('{{ "a".center(10**9) }}', r"template limit: center\(\) argument"),
    "format-width": ('{{ "{:>999999999}".format(1) }}', "template limit: a format width"),
    "percent-width": ('{{ "%999999999d" % 1 }}', "template limit: a format width"),
    "replace-bomb": (
        '{% set a = "a" * 2000 %}{{ a.replace("a", a) }}',
        "template limit: a string of more than",
    ),
    "indent-bomb": ('{{ ("a\\n" * 100000) | indent(10000) }}', "template limit: a string of"),
    "expandtabs-bomb": (
        '{{ ("\\t" * 100000).expandtabs(1000) }}',
        "template limit: a string of more than",
    ),
    "batch-fill": ("{{ [1] | batch(10**9, 0) | list }}", "template limit: filter 'batch'"),
    "int-growth": (
        "{% set a = 2 ** 8000 %}{{ a * a * a }}",
        "template limit: an integer of more than",
    ),
    "parens-300": ("{{ " + "(" * 300 + "1" + ")" * 300 + " }}", "nested too deeply|syntax"),
    "parens-5000": ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply|syntax"),
    "loop-recursive": (
        "{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}",
        "template limit: calls nested more than",
    ),
    "unknown-filter": ('{{ "a" | nosuch }}', "template error: no filter named 'nosuch'"),
    "unknown-test": ('{{ "a" is nosuch }}', "template error: no test named 'nosuch'"),
    "undefined-name": ("{{ nothing }}", "undefined name 'nothing'"),
    "syntax-error": ('{{ "a" + }}', "template syntax error"),
    "unclosed-block": ("{% if true %}x", "template syntax error"),
    "include": ('{% include "recipe.yaml" %}', "template error"),
    "import": ('{% import "recipe.yaml" as x %}{{ x }}', "template error"),
    "extends": ('{% extends "recipe.yaml" %}', "template error"),
    "list-append": ("{% set l = [] %}{{ l.append(1) }}", "refused by the template sandbox"),
    "nan-literal-print": ("{{ 1e999 - 1e999 }}x", "expected a finite number|is greater|ok"),
}
for tid, (template, message) in PROMPT_TEMPLATES.items():
    if tid == "nan-literal-print":
        continue
    add(
        f"template-{tid}",
        rf"recipe\.yaml:7:\d+: error: steps\.c\.prompt: .*(?:{message})",
        with_ok(**{"recipe.yaml": recipe(prompt=q(template))}),
    )

# The known ways out of a Jinja sandbox: every one refused, none renders.
ESCAPES = {
    "str-class-mro": '{{ "".__class__.__mro__ }}',
    "subclasses": "{{ ().__class__.__base__.__subclasses__() }}",
    "params-class": "{{ params.__class__ }}",
    "lipsum-globals": "{{ lipsum.__globals__ }}",
    "range-globals": "{{ range.__globals__ }}",
    "cycler-init-globals": "{{ cycler.__init__.__globals__ }}",
    "joiner-init-globals": "{{ joiner.__init__.__globals__.os }}",
    "namespace-init-globals": "{{ namespace.__init__.__globals__ }}",
    "format-attr": '{{ "{0.__class__.__mro__}".format(1) }}',
    "format-map-attr": '{{ "{x.__class__}".format_map({"x": 1}) }}',
    "attr-filter": '{{ "" | attr("__class__") }}',
    "getitem-dunder": '{{ ""["__class__"] }}',
    "self-context": "{{ self._TemplateReference__context }}",
    "func-code": "{{ lipsum.__code__ }}",
    "map-attribute": '{{ [""] | map(attribute="__class__") | list }}',
    "str-mod-attr": '{{ "%s" % ().__class__ }}',
    "mro-via-step": "{{ step.__class__.__mro__ }}",
    "dict-builtins": "{{ dict.__init__.__globals__ }}",
    "loop-dunder": "{% for x in [1] %}{{ loop.__class__ }}{% endfor %}",
    "set-gi-frame": "{% set g = (x for x in []) %}{{ g }}",
}
for eid, template in ESCAPES.items():
    add(
        f"sandbox-{eid}",
        r"recipe\.yaml:7:\d+: error: steps\.c\.prompt: "
        r"(?:refused by the template sandbox|undefined|unknown param|template syntax error"
        r"|template error)",
        with_ok(**{"recipe.yaml": recipe(prompt=q(template))}),
    )
add(
    "sandbox-in-outputs",
    r"recipe\.yaml:10:\d+: error: outputs\.final: refused by the template sandbox",
    with_ok(**{"recipe.yaml": recipe(final=q("{{ steps.c.image.__class__ }}"))}),
)
add(
    "outputs-index-past-n",
    r"recipe\.yaml:10:\d+: error: outputs\.final: undefined: steps\.c\.images has no item 1",
    with_ok(**{"recipe.yaml": recipe(final=q("{{ steps.c.images[1] }}"))}),
)
add(
    "outputs-unknown-filter",
    r"recipe\.yaml:10:\d+: error: outputs\.final: template error: no filter named 'nope'",
    with_ok(**{"recipe.yaml": recipe(final=q("{{ steps.c.image | nope }}"))}),
)

# -- numbers that are not numbers -----------------------------------------------------------

for nid, value in {
    "nan-literal": ".nan",
    "inf-literal": ".inf",
    "nan-template": q("{{ 'nan' | float }}"),
    "inf-template": q("{{ 1e999 }}"),
    "nan-arith": q("{{ 1e999 - 1e999 }}"),
    "nan-string": q("nan"),
}.items():
    add(
        f"number-{nid}",
        r"recipe\.yaml:8:\d+: error: steps\.c\.parameters\.strength: "
        r"(?:expected a finite number|.*greater than the maximum|expected a number)",
        with_ok(**{"recipe.yaml": recipe(strength=value)}),
    )
add(
    "number-nan-in-defaults",
    r"recipe\.yaml:4:\d+: error: steps\.c\.parameters\.strength: expected a finite number",
    with_ok(
        **{
            "recipe.yaml": "version: 1\nname: hard\ndefaults:\n  strength: .nan\nsteps:\n"
            "  c:\n    function: stylization_all\n    image: ok.png\n    prompt: x\n"
        }
    ),
)
add(
    "number-nan-param-default",
    r"recipe\.yaml:4:\d+: error: params\.s: expected a finite number",
    with_ok(
        **{
            "recipe.yaml": "version: 1\nname: hard\nparams:\n  s: {type: number, default: .nan}\n"
            "steps:\n  c:\n    function: stylization_all\n    image: ok.png\n    prompt: x\n"
            "    parameters: {strength: '{{ params.s }}'}\n"
        }
    ),
)

# -- YAML: bombs, size, encoding, syntax ----------------------------------------------------

LAUGHS = "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
BOMB_HEAD = "version: 1\nname: hard\nx-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
add(
    "yaml-billion-laughs-in-parameters",
    r"recipe\.yaml:\d+:\d+: error: this value expands to more than 250,000 values",
    with_ok(
        **{
            "recipe.yaml": BOMB_HEAD
            + LAUGHS.replace(": &", "-x: &")
            + "steps:\n  c:\n    function: stylization_all\n    image: ok.png\n"
            "    prompt: x\n    parameters: {strength: *i}\n"
        }
    ),
)
add(
    "yaml-billion-laughs-in-prompt",
    r"recipe\.yaml:\d+:\d+: error: this value expands to more than 250,000 values",
    with_ok(
        **{
            "recipe.yaml": BOMB_HEAD
            + LAUGHS.replace(": &", "-x: &")
            + "steps:\n  c:\n    function: stylization_all\n    image: ok.png\n    prompt: *i\n"
        }
    ),
)
add(
    "yaml-merge-key-bomb",
    r"recipe\.yaml:\d+:\d+: error: this value expands to more than 250,000 values",
    with_ok(
        **{
            "recipe.yaml": "version: 1\na: &a {"
            + ", ".join(f"k{i}: v" for i in range(50))
            + "}\n"
            + "".join(
                f"l{j}: &l{j} [" + ", ".join([f"*{'a' if j == 0 else f'l{j - 1}'}"] * 50) + "]\n"
                for j in range(4)
            )
            + "steps: {}\n"
        }
    ),
)
add(
    "yaml-recursive-anchor",
    r"recipe\.yaml:3:\d+: error: this value contains an alias to itself",
    with_ok(**{"recipe.yaml": "version: 1\nname: hard\nx: &x [1, *x]\nsteps: {}\n"}),
)
add(
    "yaml-huge-document",
    r"recipe\.yaml: error: over 4 MB",
    with_ok(**{"recipe.yaml": recipe() + "# " + "x" * (4 * 1024 * 1024) + "\n"}),
)
add(
    "yaml-latin1-in-comment",
    r"recipe\.yaml:3:6: error: not UTF-8 text: byte 0xe9",
    with_ok(**{"recipe.yaml": b"version: 1\nname: hard\n# caf\xe9 au lait\nsteps: {}\n"}),
)
add(
    "yaml-latin1-in-prompt",
    r"recipe\.yaml:7:\d+: error: not UTF-8 text",
    with_ok(
        **{"recipe.yaml": recipe(prompt="une photo caf\udce9").encode("utf-8", "surrogateescape")}
    ),
)
add(
    "yaml-utf16",
    r"recipe\.yaml:1:1: error: not UTF-8 text: byte 0xff",
    with_ok(**{"recipe.yaml": recipe().encode("utf-16")}),
)
add(
    "yaml-unclosed-brace",
    r"recipe\.yaml:4:6: error: invalid YAML: the '\{' opened here is not closed",
    with_ok(
        **{
            "recipe.yaml": "version: 1\nname: hard\nsteps:\n  c: {function: colorization,\n"
            "  image: ok.png\n\n\n\n"
        }
    ),
)
add(
    "yaml-unclosed-bracket",
    r"recipe\.yaml:6:12: error: invalid YAML: the '\[' opened here is not closed",
    with_ok(**{"recipe.yaml": recipe(image="[ok.png")}),
)
add(
    "yaml-unclosed-quote",
    r"recipe\.yaml:7:13: error: invalid YAML: the quote opened here is not closed",
    with_ok(**{"recipe.yaml": recipe(prompt='"a photo')}),
)
add(
    "yaml-tab-indent",
    r"recipe\.yaml:\d+:\d+: error: invalid YAML",
    with_ok(**{"recipe.yaml": "version: 1\nsteps:\n\tc:\n\t\tfunction: colorization\n"}),
)
add(
    "yaml-python-tag",
    r"recipe\.yaml:2:\d+: error: invalid YAML.*\n  hint: recipes are plain data",
    with_ok(**{"recipe.yaml": "version: 1\nname: !!python/object/apply:os.system [echo hi]\n"}),
)
add(
    "yaml-python-name-tag",
    r"recipe\.yaml:2:\d+: error: invalid YAML",
    with_ok(**{"recipe.yaml": "version: 1\nname: !!python/name:os.system\nsteps: {}\n"}),
)
add(
    "yaml-unknown-tag",
    r"recipe\.yaml:2:\d+: error: invalid YAML",
    with_ok(**{"recipe.yaml": "version: 1\nname: !secret x\nsteps: {}\n"}),
)
add(
    "yaml-two-documents",
    r"recipe\.yaml:\d+:\d+: error: invalid YAML",
    with_ok(**{"recipe.yaml": recipe() + "---\nversion: 1\n"}),
)
add(
    "yaml-deep-nesting",
    r"recipe\.yaml:\d*:?\d*:? ?error: ",
    with_ok(**{"recipe.yaml": "version: 1\nx: " + "[" * 20000 + "]" * 20000 + "\n"}),
)
add(
    "yaml-not-a-mapping",
    r"recipe\.yaml:1:1: error: a recipe must be a mapping",
    with_ok(**{"recipe.yaml": "- version: 1\n"}),
)
add(
    "yaml-empty-file",
    r"recipe\.yaml:1:1: error: a recipe must be a mapping",
    with_ok(**{"recipe.yaml": ""}),
)
add(
    "yaml-nul-byte-in-file",
    r"recipe\.yaml:2:9: error: invalid YAML: control character '\\x00' is not allowed",
    with_ok(**{"recipe.yaml": "version: 1\nname: ha\x00rd\nsteps: {}\n"}),
)
add(
    "yaml-duplicate-key",
    r"recipe\.yaml:8:5: error: duplicate key 'image' \(first defined on line 6\)",
    with_ok(**{"recipe.yaml": recipe(prompt="x\n    image: other.png")}),
)
add(
    "recipe-is-a-directory",
    r"recipe\.yaml",
    {"recipe.yaml/keep": "x"},
)
add("recipe-missing", r"recipe\.yaml", {})

# -- params: -p and --params files ---------------------------------------------------------

PARAM_RECIPE = (
    "version: 1\nname: hard\nparams:\n  photo: {type: image, default: ok.png}\n"
    "  s: {type: number, default: 0.5}\nsteps:\n  c:\n    function: stylization_all\n"
    "    image: '{{ params.photo }}'\n    prompt: x\n    parameters: {strength: '{{ params.s }}'}\n"
)
RUN_P = ("run", "recipe.yaml", "--base-url", "{base_url}")
for pid, (args, files, expect) in {
    "p-nan": (("-p", "s=nan"), {}, r"s.*(?:finite|expected a number)"),
    "p-inf": (("-p", "s=inf"), {}, r"s.*(?:finite|expected a number|greater)"),
    "p-unknown": (("-p", "nope=1"), {}, r"nope"),
    "p-non-utf8": (("-p", "s=0.\udce95"), {}, r"-p s: the value is not UTF-8 text \(byte 0xe9"),
    "p-no-equals": (("-p", "photo"), {}, r"photo|NAME=VALUE"),
    "p-truncated-image": (
        ("-p", "photo=t.png"),
        {"t.png": OK_PNG[: len(OK_PNG) // 2]},
        r"t\.png: the image data is damaged or incomplete",
    ),
    "p-url-no-host": (("-p", "photo=http:///x.png"), {}, r"the URL http:///x\.png has no host"),
    "p-signed-url-no-host": (("-p", f"photo=https:///x.png?{SIGNED_QUERY}"), {}, r"has no host"),
    "file-non-utf8": (
        ("--params", "p.yaml"),
        {"p.yaml": b"s: 0.5\n# \xff\n"},
        r"p\.yaml:2:3: error: not UTF-8 text",
    ),
    "file-laughs": (
        ("--params", "p.yaml"),
        {"p.yaml": BOMB_HEAD + LAUGHS + "s: *i\n"},
        r"p\.yaml:\d+:\d+: error: this value expands",
    ),
    "file-not-mapping": (("--params", "p.yaml"), {"p.yaml": "- 1\n"}, r"p\.yaml:1:1: error"),
    "file-missing": (("--params", "nope.yaml"), {}, r"nope\.yaml"),
    "file-syntax": (
        ("--params", "p.yaml"),
        {"p.yaml": "s: [1\n"},
        r"p\.yaml:1:4: error: invalid YAML",
    ),
    "file-nan": (("--params", "p.yaml"), {"p.yaml": "s: .nan\n"}, r"p\.yaml:1:4: error: .*finite"),
    "file-nul-path": (
        ("--params", "p.yaml"),
        {"p.yaml": 'photo: "a\\0b.png"\n'},
        r"recipe\.yaml:9:\d+: error: steps\.c\.image: a\\x00b\.png: the path contains a NUL",
    ),
    "file-python-tag": (
        ("--params", "p.yaml"),
        {"p.yaml": "s: !!python/object/apply:os.getpid []\n"},
        r"p\.yaml:1:\d+: error: invalid YAML",
    ),
}.items():
    add(
        f"params-{pid}",
        expect,
        with_ok(**{"recipe.yaml": PARAM_RECIPE}, **files),
        args=(*RUN_P, *args),
    )

# -- images and masks ------------------------------------------------------------------------

IMG = r"recipe\.yaml:6:12: error: steps\.c\.image: "
DAMAGED = "the image data is damaged or incomplete"
for iid, (data, expect) in {
    "png-truncated-half": (OK_PNG[: len(OK_PNG) // 2], DAMAGED),
    "png-truncated-no-iend": (OK_PNG[:-12], DAMAGED),
    "png-header-4096-corrupt-data": (crafted_png(4096, 4096, random_bytes(5000)), DAMAGED),
    "png-header-4096-short-data": (crafted_png(4096, 4096, b"x\x9c" + b"\0" * 10), DAMAGED),
    "png-header-4096-valid-small-data": (
        crafted_png(4096, 4096, __import__("zlib").compress(b"\0" * 1000)),
        DAMAGED,
    ),
    "png-bad-crc": (OK_PNG[:-40] + bytes([OK_PNG[-40] ^ 0xFF]) + OK_PNG[-39:], DAMAGED),
    "png-bad-header": (OK_PNG[:20] + b"\xff\xff" + OK_PNG[22:], "not a readable image"),
    "png-signature-only": (b"\x89PNG\r\n\x1a\n", "not a readable image"),
    "png-garbage": (random_bytes(4000), "not a readable image"),
    "png-empty": (b"", "not a readable image"),
    "png-text": (b"hello, I am not an image\n" * 10, "not a readable image"),
    "jpeg-truncated": (OK_JPEG[: len(OK_JPEG) // 2], DAMAGED),
    "jpeg-header-only": (OK_JPEG[:200], DAMAGED + "|not a readable image"),
    "too-small": (png_bytes((100, 100)), r"100x100 px: each side must be between"),
    "too-large-header": (crafted_png(9000, 300, b""), r"9000x300 px"),
    "gif": (
        b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00;",
        "format GIF is not accepted|not a readable",
    ),
}.items():
    add(
        f"image-{iid}",
        IMG + f"(?:ok\\.png: )?(?:{expect})",
        {"ok.png": data, "recipe.yaml": recipe()},
    )

for uid, (value, expect) in {
    "url-no-host": ("http:///x.png", "has no host"),
    "url-https-no-host": ("https://", "has no host"),
    "url-no-host-signed": (f"'http:///x.png?{SIGNED_QUERY}'", "has no host"),
    "url-space": ("'http://example.com/a b.png'", "spaces or control characters"),
    "url-non-ascii": ("http://exämple.com/a.png", "non-ASCII"),
    "url-bad-port": ("http://example.com:99999/a.png", "malformed"),
    "url-oss-empty": ("oss://", "names no object"),
    "nul-path": ('"ok\\0.png"', r"ok\\x00\.png: the path contains a NUL byte"),
    "missing-file": ("nope.png", "no such file"),
    "dev-zero": ("/dev/zero", "/dev/zero: not a file"),
    "proc-environ": ("/proc/self/environ", "not a readable image|cannot read"),
    "file-url-etc-passwd": ("file:///etc/passwd", "not a readable image"),
    "params-scope": (q("{{ params }}"), "expected an image path, URL or step output"),
    "directory": ("sub", "not a file"),
    "data-uri-bad-base64": ("'data:image/png;base64,@@@@'", "data URI"),
    "data-uri-truncated-png": (q(data_uri(OK_PNG[:3000])), "data URI: .*" + DAMAGED),
    "data-uri-not-image": (q(data_uri(b"hello")), "data URI: not a readable image"),
    "data-uri-not-base64": ("'data:image/png,abc'", "data URI is not base64"),
    "template-nul": (q('{{ "ok" ~ "\\x00" ~ ".png" }}'), "NUL byte|template"),
}.items():
    add(
        f"image-{uid}",
        IMG + f".*(?:{expect})",
        with_ok(**{"recipe.yaml": recipe(image=value), "sub/x": "x"}),
    )

MASK = r"recipe\.yaml:7:11: error: steps\.c\.mask: "
for mid, (data, expect) in {
    "truncated": (png_bytes(mode="L")[:500], DAMAGED),
    "garbage": (random_bytes(3000, 7), "not a readable image"),
    "size-mismatch": (png_bytes((640, 480), "L"), "the mask is 640x480 px but the image is"),
    "header-4096-corrupt": (crafted_png(4096, 4096, random_bytes(3000, 3)), DAMAGED),
}.items():
    add(
        f"mask-{mid}",
        MASK + f".*(?:{expect})",
        {"ok.png": OK_PNG, "mask.png": data, "recipe.yaml": masked()},
    )
add("mask-missing", MASK + ".*no such file", {"ok.png": OK_PNG, "recipe.yaml": masked()})

# -- CLI usage --------------------------------------------------------------------------------

OK_FILES = with_ok(**{"recipe.yaml": recipe()})
for cid, (args, expect, never) in {
    "base-url-userinfo": (
        ("run", "recipe.yaml", "--base-url", f"http://user:{FAKE_KEY}@127.0.0.1:9/api/v1"),
        "carries a user name or password",
        (FAKE_KEY,),
    ),
    "base-url-userinfo-env-style": (
        ("run", "recipe.yaml", "--base-url", f"http://{FAKE_KEY}@localhost:9/api/v1"),
        "carries a user name or password",
        (FAKE_KEY,),
    ),
    "base-url-no-host": (("run", "recipe.yaml", "--base-url", "http:///api/v1"), "base URL", ()),
    "base-url-ftp": (
        ("run", "recipe.yaml", "--base-url", "ftp://127.0.0.1/api/v1"),
        "base URL",
        (),
    ),
    "base-url-bad-port": (
        ("run", "recipe.yaml", "--base-url", "http://127.0.0.1:notaport/api/v1"),
        "base URL",
        (),
    ),
    "base-url-not-loopback": (
        ("run", "recipe.yaml", "--base-url", "http://192.0.2.1/api/v1"),
        "not on this machine",
        (),
    ),
    "backend-unknown": (("run", "recipe.yaml", "--backend", "bogus"), "bogus", ()),
    "dashscope-without-key": (
        ("run", "recipe.yaml", "--backend", "dashscope"),
        "DASHSCOPE_API_KEY",
        (),
    ),
    "rps-zero": (("run", "recipe.yaml", "--base-url", "{base_url}", "--rps", "0"), "rps", ()),
    "concurrency-zero": (
        ("run", "recipe.yaml", "--base-url", "{base_url}", "--concurrency", "0"),
        "concurrency",
        (),
    ),
    "force-unknown-step": (
        ("run", "recipe.yaml", "--base-url", "{base_url}", "--force", "nope"),
        "no step 'nope'",
        (),
    ),
    "locked-without-lock": (
        ("run", "recipe.yaml", "--base-url", "{base_url}", "--locked"),
        "no lock file",
        (),
    ),
    "unknown-option": (("run", "recipe.yaml", "--nope"), "No such option", ()),
    "no-recipe-argument": (("run",), "Missing argument", ()),
    "out-is-a-file": (
        ("run", "recipe.yaml", "--base-url", "{base_url}", "--out", "ok.png"),
        "ok.png",
        (),
    ),
}.items():
    add(f"cli-{cid}", expect, OK_FILES, args=args, never=never)

# -- fan-out: foreach / matrix that would expand without end -------------------------------

FANOUT = "version: 1\nname: hard\nsteps:\n  c:\n    function: colorization\n    image: ok.png\n"
for fid, (line, expect) in {
    "foreach-range-1e9": (
        'foreach: "{{ range(10**9) }}"',
        r"7:\d+: error: steps\.c\.foreach: template limit",
    ),
    "foreach-100000": (
        'foreach: "{{ range(100000) | list }}"',
        r"7:\d+: error: steps\.c\.foreach: .*max_instances",
    ),
    "matrix-1e9": (
        "matrix: {" + ", ".join(f'{k}: "{{{{ range(1000)|list }}}}"' for k in "abc") + "}",
        r"7:\d+: error: steps\.c\.matrix: .*max_instances",
    ),
    "foreach-alias-bomb": (
        "foreach: *i",
        r"error: this value expands to more than 250,000 values",
    ),
}.items():
    head = BOMB_HEAD + LAUGHS.replace(": &", "-x: &") if "alias" in fid else ""
    text = FANOUT.replace("version: 1\nname: hard\n", head or "version: 1\nname: hard\n")
    add(
        f"fanout-{fid}",
        r"recipe\.yaml:" + expect if not head else expect,
        with_ok(**{"recipe.yaml": text + f"    {line}\n"}),
    )
