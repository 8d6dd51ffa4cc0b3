"""Build-time helpers of the trajinfer documentation (a small Sphinx extension).

- :func:`write_api_pages`: one reference page per public module that imports, listing every
  public name (``__all__``, or the public objects a module defines) with autosummary, so the
  reference follows the code and a module that does not exist yet is simply left out.
- :func:`write_benchmark_pages`: ``benchmarks/results/*.md`` converted to reStructuredText
  (tables become ``list-table`` directives, images are copied next to the pages); a benchmark
  that has not been run gets a "not yet run" page. Converted text that docutils would complain
  about is shown verbatim instead, so a results file can never break the build.
- A ``missing-reference`` handler resolving ``trajinfer.<submodule>.Name`` to the page where
  the same object is documented under a shorter public name (``trajinfer.paths.SnapshotPath``
  -> ``trajinfer.SnapshotPath``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import re
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------- API pages


@dataclass
class ModuleSpec:
    """A reference page: the module, its title and a curated grouping of its names."""

    name: str
    title: str
    intro: str = ""
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    section: str = "main"  # "main", "domain" or "internals"


API_MODULES = [
    ModuleSpec(
        "trajinfer", "trajinfer: the estimator and the fitted dynamics",
        "The array-level interface: the scikit-learn style trainer, the fitted dynamics it produces, "
        "the marginal paths it is trained on and the simulated trajectories. ``tj.fit`` (the AnnData "
        "front end) is :func:`trajinfer.tl.fit`.",
        [
            ("Trainer", ["ActionMatching", "RunConfig", "load"]),
            ("Fitted dynamics", ["Dynamics"]),
            ("Marginal paths", ["SnapshotPath", "CallablePath", "MarginalPath"]),
            ("Simulation results", ["Trajectories"]),
            ("AnnData front end", ["fit"]),
            ("Settings: verbosity and progress bars", ["settings"]),
        ],
    ),
    ModuleSpec(
        "trajinfer.tl", "trajinfer.tl: tools on AnnData",
        "Fit a time course, move cells through time and summarise where they go.",
        [
            ("Fitting", ["fit", "default_sigma", "fit_record", "FitRecord"]),
            ("Validation", ["holdout"]),
            ("Simulation", ["simulate", "push", "pull", "PullResult", "cells_at"]),
            ("Fate and growth", ["fate", "FateResult", "growth_rates"]),
            ("scverse: velocities, transitions, embeddings", ["velocity_embedding", "transition_matrix", "cellrank_kernel", "embed"]),
            ("Gene space: trends along trajectories, fate drivers, decoding", ["gene_trends", "GeneTrends", "fate_drivers", "decode"]),
        ],
    ),
    ModuleSpec(
        "trajinfer.pp", "trajinfer.pp: preprocessing",
        "Numeric time labels and the representation the dynamics are fitted in.",
    ),
    ModuleSpec("trajinfer.pl", "trajinfer.pl: plotting", "Figures of data, trajectories, velocities and training."),
    ModuleSpec("trajinfer.datasets", "trajinfer.datasets: example data", "Loaders returning :class:`anndata.AnnData`."),
    ModuleSpec(
        "trajinfer.metrics", "trajinfer.metrics: distances between samples",
        "Note the naming: :func:`~trajinfer.metrics.w1` (EMD with Euclidean ground cost) is the "
        "number that the embryoid-body tables of NLSB and the Action Matching paper call \"W2\"; "
        ":func:`~trajinfer.metrics.w2` is the true 2-Wasserstein distance. See :ref:`w1-vs-w2`.",
    ),
    ModuleSpec("trajinfer.quantum", "trajinfer.quantum: quantum dynamics", section="domain"),
    ModuleSpec("trajinfer.vision", "trajinfer.vision: images", section="domain"),
    ModuleSpec("trajinfer.demo", "trajinfer.demo: the main job", "What ``python -m trajinfer demo`` runs.", section="domain"),
    ModuleSpec(
        "trajinfer.costs", "trajinfer.costs: kinetic costs (c-AM)",
        "Pass an instance (or a name) as ``ActionMatching(cost=...)``.", section="internals",
    ),
    ModuleSpec(
        "trajinfer.networks", "trajinfer.networks: potential networks",
        "Built-in potentials; any :class:`torch.nn.Module` mapping ``(x (B, d), tau (B,))`` to ``(B,)`` works.",
        section="internals",
    ),
    ModuleSpec(
        "trajinfer.diagnostics", "trajinfer.diagnostics: checks of a fit",
        "What ``model.diagnostics_`` holds and when a fit warns.", section="internals",
    ),
    ModuleSpec("trajinfer.training", "trajinfer.training: the optimisation loop", section="internals"),
    ModuleSpec("trajinfer.params", "trajinfer.params: scikit-learn's estimator contract", section="internals"),
    ModuleSpec("trajinfer.persistence", "trajinfer.persistence: model files", section="internals"),
    ModuleSpec("trajinfer.losses", "trajinfer.losses: the objectives", section="internals"),
    ModuleSpec("trajinfer.time_sampling", "trajinfer.time_sampling: time proposals", section="internals"),
    ModuleSpec("trajinfer.derivatives", "trajinfer.derivatives: derivatives of the potential", section="internals"),
    ModuleSpec("trajinfer.integrators", "trajinfer.integrators: ODE and SDE integrators", section="internals"),
]

SECTION_TITLES = {
    "main": "Core",
    "domain": "Physics, images and the demo",
    "internals": "Building blocks",
}


def _import(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def public_names(module: Any) -> list[str]:
    """``__all__`` without submodules, else the public classes and functions the module defines."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n for n, obj in vars(module).items()
            if not n.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
    out = []
    for n in names:
        try:
            obj = getattr(module, n)
        except AttributeError:
            continue
        if inspect.ismodule(obj):
            continue
        out.append(n)
    return out


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _autosummary(names: list[str]) -> str:
    body = "\n".join(f"   {n}" for n in names)
    return f".. autosummary::\n   :toctree: .\n   :nosignatures:\n\n{body}\n"


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_api_pages(out_dir: Path) -> list[str]:
    """Write the reference pages and ``toc.inc`` (the toctree that ``api.rst`` includes).

    Returns the modules documented. Stale files (a removed module or name) are deleted so they
    cannot leave orphan documents behind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep: set[str] = {"toc.inc"}
    documented: dict[str, list[str]] = {}
    for spec in API_MODULES:
        module = _import(spec.name)
        if module is None:
            continue
        names = public_names(module)
        if not names:
            continue
        lines = [f".. _api-{spec.name}:\n", _title(spec.title)]
        lines.append(f".. automodule:: {spec.name}\n   :no-members:\n")
        if spec.intro:
            lines.append(spec.intro + "\n")
        lines.append(f".. currentmodule:: {spec.name}\n")
        listed: list[str] = []
        for heading, group in spec.groups:
            present = [n for n in group if n in names]
            if present:
                lines += [_title(heading, "-"), _autosummary(present)]
                listed += present
        rest = [n for n in names if n not in listed]
        if rest:
            if listed:
                lines.append(_title("Other", "-"))
            lines.append(_autosummary(rest))
        cli = _cli_help() if spec.name == "trajinfer" else None
        if cli:
            lines += [_title("Command line", "-"),
                      "The ``trajinfer`` command (also ``python -m trajinfer``):\n",
                      ".. code-block:: text\n\n" + textwrap.indent(cli.rstrip(), "   ") + "\n"]
        page = spec.name.replace(".", "_")
        _write_if_changed(out_dir / f"{page}.rst", "\n".join(lines))
        keep.add(f"{page}.rst")
        keep.update(f"{spec.name}.{n}.rst" for n in names)
        documented.setdefault(spec.section, []).append(page)
    toc = []
    for section, pages in documented.items():
        toc.append(f".. rubric:: {SECTION_TITLES[section]}\n")
        toc.append(".. toctree::\n   :maxdepth: 1\n\n" + "\n".join(f"   generated/api/{p}" for p in pages) + "\n")
    _write_if_changed(out_dir / "toc.inc", "\n".join(toc))
    for path in out_dir.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink()
    return [p for pages in documented.values() for p in pages]


def _cli_help() -> str | None:
    """``trajinfer --help`` if the command-line module exists."""
    cli = _import("trajinfer.cli")
    if cli is None or not hasattr(cli, "main"):
        return None
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(["--help"])
        except SystemExit:
            pass
        except Exception:
            return None
    text = buffer.getvalue().replace("usage: __main__.py", "usage: trajinfer").replace("usage: sphinx", "usage: trajinfer")
    return text or None


# --------------------------------------------------------------------------- benchmark pages

# Benchmarks the project promises; each gets a page even before its results exist.
EXPECTED_BENCHMARKS = {
    "defaults": ("How the defaults were chosen (leave one time point out)", "python benchmarks/defaults.py"),
    "groundtruth": ("Ground truth: error against time", "python benchmarks/groundtruth.py"),
    "paths_lr": ("Mixture against OT across learning rates", "python benchmarks/paths_lr.py"),
    "eb": ("Embryoid body (NLSB protocol)", "python benchmarks/eb.py"),
    "eb_loo": ("Embryoid body, leave one time point out", "python benchmarks/eb.py --loo"),
    "petals": ("Petals (MIOFlow comparison)", "python benchmarks/petals.py"),
    "petals_loo": ("Petals, leave one time point out", "python benchmarks/petals.py --loo"),
    "hydrogen": ("Hydrogen atom (paper Sec. 4.2)", "python benchmarks/hydrogen.py"),
    "vision": ("Images (paper Sec. 4.3)", "python benchmarks/vision.py"),
    "gpu": ("GPU checks", "python benchmarks/gpu.py"),
}
ALIASES = {"embryoid_body": "eb", "embryoid": "eb"}


def _escape(text: str) -> str:
    """Escape characters that start reStructuredText inline markup."""
    return re.sub(r"([\\`*_|\[\]<>])", r"\\\1", text)


_INLINE = re.compile(
    r"(?P<code>`+)(?P<codetext>.+?)(?P=code)"
    r"|!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)"
    r"|\[(?P<ltext>[^\]]+)\]\((?P<href>[^)\s]+)\)"
    r"|\*\*(?P<bold>[^*]+?)\*\*"
    r"|(?<![\w*])\*(?P<em>[^*\s][^*]*?)\*(?!\w)"
    r"|(?<!\w)_(?P<em2>[^_\s][^_]*?)_(?!\w)"
    r"|<(?P<url>https?://[^>\s]+)>"
)


def _inline(text: str) -> str:
    """Convert one paragraph of markdown inline markup to reStructuredText."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(_escape(text[pos:m.start()]))
        if m.group("code"):
            code = m.group("codetext").strip()
            out.append(f"\\ ``{code}``\\ " if "``" not in code else _escape(code))
        elif m.group("src") is not None:
            out.append(_escape(m.group("alt") or ""))  # inline images: keep the alt text only
        elif m.group("href"):
            out.append(f"\\ `{_escape(m.group('ltext'))} <{m.group('href')}>`__\\ ")
        elif m.group("bold"):
            out.append(f"\\ **{_escape(m.group('bold'))}**\\ ")
        elif m.group("em"):
            out.append(f"\\ *{_escape(m.group('em'))}*\\ ")
        elif m.group("em2"):
            out.append(f"\\ *{_escape(m.group('em2'))}*\\ ")
        elif m.group("url"):
            out.append(f"\\ {m.group('url')}\\ ")
        pos = m.end()
    out.append(_escape(text[pos:]))
    result = "".join(out)
    # "\ " escapes are only needed next to other characters; drop them at the ends and around spaces
    result = re.sub(r"(^|\s)\\ ", r"\1", result)
    result = re.sub(r"\\ (\s|$)", r"\1", result)
    return result


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_IMAGE_LINE = re.compile(r"^\s*!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)\s*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_ADORNMENT = "=-~^\"'"


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells, current, in_code = [], "", False
    for i, char in enumerate(line):  # split on "|" outside code spans and not escaped
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code and (i == 0 or line[i - 1] != "\\"):
            cells.append(current)
            current = ""
        else:
            current += char
    cells.append(current)
    return [c.strip().replace("\\|", "|") for c in cells]


def md_to_rst(markdown: str, title: str, image_dir: str = "") -> tuple[str, list[str]]:
    """Convert a benchmark's markdown to reStructuredText.

    Handles headings, paragraphs (with hard line breaks), bullet and numbered lists, pipe
    tables, fenced code blocks, images on their own line, inline code, emphasis and links.
    ``title`` becomes the page title unless the markdown starts with a heading.

    Returns the text and the image file names referenced.
    """
    lines = markdown.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    images: list[str] = []
    levels: list[int] = []  # stack of markdown heading levels currently open
    have_title = False
    i = 0

    def heading(text: str, depth: int) -> None:
        char = _ADORNMENT[min(depth, len(_ADORNMENT) - 1)]
        text = _inline(text) or "Section"
        out.extend(["", text, char * max(len(text), 4), ""])

    # page title
    first = next((ln for ln in lines if ln.strip()), "")
    m = _HEADING.match(first)
    if m and len(m.group(1)) == 1:
        heading(m.group(2), 0)
        lines = lines[lines.index(first) + 1:]
    else:
        heading(title, 0)
    have_title = True

    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            text = " ".join(p.strip() for p in paragraph)
            # markdown hard breaks ("two spaces" at line end) become separate lines of a line block
            parts = [p for p in re.split(r"\s{2,}\n|\\\n", "\n".join(paragraph)) if p.strip()]
            if len(parts) > 1:
                out.extend(["", *[f"| {_inline(' '.join(p.split()))}" for p in parts], ""])
            else:
                out.extend(["", _inline(" ".join(text.split())), ""])
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
            i += 1
            continue
        if stripped.startswith("```") or stripped.startswith("~~~"):
            flush()
            fence = stripped[:3]
            lang = stripped[3:].strip() or "text"
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                block.append(lines[i])
                i += 1
            i += 1
            lang = lang if re.fullmatch(r"[\w+-]+", lang) else "text"
            out.extend(["", f".. code-block:: {lang}", ""] + [f"   {b}" if b.strip() else "" for b in block] + [""])
            continue
        hm = _HEADING.match(line)
        if hm:
            flush()
            level = len(hm.group(1))
            while levels and levels[-1] >= level:
                levels.pop()
            levels.append(level)
            heading(hm.group(2), len(levels))
            i += 1
            continue
        im = _IMAGE_LINE.match(line)
        if im:
            flush()
            src = im.group("src")
            name = src.split("/")[-1]
            if not re.match(r"^[a-z]+://", src):
                images.append(name)
                out.extend(["", f".. figure:: {image_dir}{name}", "   :width: 100%", ""])
                if im.group("alt"):
                    out.extend([f"   {_inline(im.group('alt'))}", ""])
            i += 1
            continue
        if "|" in stripped and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]) and "-" in lines[i + 1]:
            flush()
            header = _split_row(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip() and "|" in lines[i]:
                rows.append(_split_row(lines[i]))
                i += 1
            width = len(header)
            out.extend(["", ".. list-table::", "   :header-rows: 1", "   :class: benchmark-table", ""])
            for row in [header] + rows:
                row = (row + [""] * width)[:width]
                for j, cell in enumerate(row):
                    text = _inline(cell).replace(" ± ", "\u00a0±\u00a0")
                    out.append(f"   {'* -' if j == 0 else '  -'} {text}".rstrip() if text else f"   {'* -' if j == 0 else '  -'} ..")
            out.append("")
            continue
        lm = _LIST_ITEM.match(line)
        if lm:
            flush()
            items = []
            while i < len(lines) and lines[i].strip():
                if re.match(r"\s*(>|#|```|~~~|\|)", lines[i]):
                    break
                lm = _LIST_ITEM.match(lines[i])
                if lm:
                    items.append(lm.group(3).strip())
                elif items:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("")
            for item in items:
                out.append(f"- {_inline(item)}")
            out.append("")
            continue
        if stripped.startswith(">"):
            flush()
            quote = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                quote.append(lines[i].strip()[1:].strip())
                i += 1
            out.extend(["", ".. note::", "", f"   {_inline(' '.join(quote))}", ""])
            continue
        paragraph.append(line)
        i += 1
    flush()
    del have_title
    text = "\n".join(out).strip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text, images


def _rst_problems(text: str) -> list[str]:
    """Messages docutils reports (warnings and above) when parsing ``text`` on its own."""
    from docutils import nodes
    from docutils.core import publish_doctree
    from docutils.parsers.rst import directives, roles

    del directives, roles
    doctree = publish_doctree(
        text,
        settings_overrides={"report_level": 5, "halt_level": 5, "warning_stream": io.StringIO(), "file_insertion_enabled": False},
    )
    problems = []
    for msg in doctree.findall(nodes.system_message):
        if msg["level"] >= 2:
            problems.append(msg.astext())
    return problems


def _verbatim_page(markdown: str, title: str, reason: str) -> str:
    return (
        _title(title)
        + f"\n.. note::\n\n   Shown verbatim ({_escape(reason)}).\n\n.. code-block:: markdown\n\n"
        + textwrap.indent(markdown.rstrip() or "(empty)", "   ")
        + "\n"
    )


def write_benchmark_pages(results_dir: Path, out_dir: Path) -> list[str]:
    """Convert ``results_dir/*.md`` into pages under ``out_dir`` and copy their figures.

    Every expected benchmark gets a page ("not yet run" when its results are missing); PNG
    figures that no markdown file shows are appended to the page whose name prefixes theirs.
    Returns the page names (without suffix), in display order.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_files = sorted(results_dir.glob("*.md")) if results_dir.is_dir() else []
    pngs = sorted(p.name for p in results_dir.glob("*.png")) if results_dir.is_dir() else []
    pages: dict[str, str] = {}
    shown: set[str] = set()
    for md in md_files:
        stem = ALIASES.get(md.stem, md.stem)
        if md.stem.lower() == "readme":
            continue
        title = EXPECTED_BENCHMARKS.get(stem, (md.stem.replace("_", " ").capitalize(), ""))[0]
        markdown = md.read_text(errors="replace")
        try:
            text, images = md_to_rst(markdown, title)
            missing = [name for name in images if not (results_dir / name).exists()]
            for name in missing:  # a figure the script did not write: say so instead of failing
                text = text.replace(f".. figure:: {name}\n   :width: 100%\n", f".. note::\n\n   Figure ``{name}`` not found.\n", 1)
            problems = _rst_problems(text)
            if problems:
                text = _verbatim_page(markdown, title, "the markdown could not be converted cleanly")
                images = []
            shown.update(n for n in images if n not in missing)
        except Exception as err:
            text = _verbatim_page(markdown, title, f"conversion failed: {type(err).__name__}")
        source = f"\n.. rubric:: Source\n\n``benchmarks/results/{md.name}`` (the table above is converted from it at build time).\n"
        pages[stem] = text + source
    for stem, (title, command) in EXPECTED_BENCHMARKS.items():
        if stem not in pages:
            pages[stem] = (
                _title(title)
                + "\n.. note::\n\n   Not yet run: ``benchmarks/results/" + stem + ".md`` is missing in this checkout.\n"
                + f"   Run ``{command}`` from the repository root to produce it, then rebuild the docs.\n"
            )
    # figures no markdown file shows
    extra: dict[str, list[str]] = {}
    for png in pngs:
        if png in shown:
            continue
        owner = next((s for s in sorted(pages, key=len, reverse=True) if png.startswith(s)), None)
        extra.setdefault(owner or "figures", []).append(png)
    for stem, files in extra.items():
        block = "\n" + _title("Figures", "-") + "\n"
        for png in files:
            caption = _escape(Path(png).stem.replace("_", " "))
            block += f"\n.. figure:: {png}\n   :width: 100%\n\n   {caption}\n"
        if stem not in pages:
            pages[stem] = _title("Other figures")
        pages[stem] += block
    keep = set()
    for stem, text in pages.items():
        _write_if_changed(out_dir / f"{stem}.rst", text)
        keep.add(f"{stem}.rst")
    for png in pngs:
        target = out_dir / png
        source = results_dir / png
        if not target.exists() or target.stat().st_mtime < source.stat().st_mtime or target.stat().st_size != source.stat().st_size:
            shutil.copy2(source, target)
        keep.add(png)
    for path in out_dir.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink()
    order = [s for s in EXPECTED_BENCHMARKS if s in pages] + sorted(s for s in pages if s not in EXPECTED_BENCHMARKS)
    toc = ".. toctree::\n   :maxdepth: 2\n\n" + "\n".join(f"   generated/benchmarks/{s}" for s in order) + "\n"
    _write_if_changed(out_dir.parent / "benchmarks_toc.inc", toc)
    return order


# ------------------------------------------------------------------------- gallery helpers

OPTIONAL_EXAMPLES = {"plot_hydrogen.py": "trajinfer.quantum", "plot_digits.py": "trajinfer.vision"}


def gallery_ignore_pattern() -> str:
    """Skip examples whose optional subpackage does not import in this checkout."""
    skip = [re.escape(name) for name, module in OPTIONAL_EXAMPLES.items() if _import(module) is None]
    return r"(__init__\.py" + "".join(f"|{s}" for s in skip) + ")"


GALLERY_ORDER = (
    "plot_embryoid_body.py", "plot_scverse_dyngen.py", "plot_growth_uam.py", "plot_petals.py", "plot_hydrogen.py",
    "plot_digits.py",
)


class GalleryOrder:
    """Order of the gallery: biology first, then physics and images; unknown scripts last."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = os.path.basename(filename)
        return (GALLERY_ORDER.index(name) if name in GALLERY_ORDER else len(GALLERY_ORDER), name)

    def __repr__(self) -> str:
        return "GalleryOrder"


def reset_random_state(gallery_conf: dict, fname: str) -> None:
    """Run before every example: fixed seeds, and a thread count that suits a shared machine."""
    del gallery_conf, fname
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    # the examples fit small networks: one thread is as fast and does not fight other jobs
    torch.set_num_threads(int(os.environ.get("TRAJINFER_DOCS_THREADS", "1")))


# ---------------------------------------------------------------- cross-reference resolution


def _resolve_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``trajinfer.a.b.Name`` to the documented public name of the same object.

    A reference to a ``trajinfer`` object that resolves nowhere is a broken internal link: it
    is reported as a warning (so a ``-W`` build fails), while references to other packages
    stay silent (``nitpicky = False``).
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("trajinfer."):
        return None
    resolved = _resolve_documented(app, env, node, contnode, target)
    if resolved is None:
        from sphinx.util import logging as sphinx_logging

        sphinx_logging.getLogger(__name__).warning(
            "broken internal reference: %s %r is not documented under this or any other name",
            node.get("reftype"), target, location=node, type="trajinfer", subtype="ref",
        )
    return resolved


def _resolve_documented(app: Any, env: Any, node: Any, contnode: Any, target: str) -> Any:
    domain = env.get_domain("py")
    if node.get("reftype") == "mod":
        # an implementation module whose names a documented package re-exports: link the package
        parts = target.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            entry = domain.modules.get(".".join(parts[:cut]))
            if entry is not None:
                from sphinx.util.nodes import make_refnode

                return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, target)
        return None
    obj = _lookup(target)
    if obj is None:
        return None
    short = target.rsplit(".", 1)[-1]
    for name, entry in domain.objects.items():
        if name.rsplit(".", 1)[-1] != short or name == target or getattr(entry, "aliased", False):
            continue
        if _lookup(name) is obj:
            from sphinx.util.nodes import make_refnode

            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)
    return None


def _lookup(dotted: str) -> Any | None:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _import(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _skip_member(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Hide scikit-learn's generated metadata-routing methods (``set_fit_request``, ...)."""
    del app, what, obj, options
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None if not skip else skip


def _public_bases(app: Any, name: str, obj: Any, options: Any, bases: list) -> None:
    """Show the public ancestors instead of private base classes (``_Baseline`` or a class of a
    private module such as ``trajinfer._params`` -> its public bases)."""
    del app, name, obj, options

    def private(cls: type) -> bool:
        parts = [cls.__name__, *getattr(cls, "__module__", "").split(".")]
        return any(part.startswith("_") and part != "__main__" for part in parts if part != "builtins")

    expanded: list = []
    for base in bases:
        if isinstance(base, type) and private(base):
            expanded.extend(b for b in base.__mro__[1:] if not private(b) and b is not object)
        else:
            expanded.append(base)
    bases[:] = list(dict.fromkeys(expanded)) or [object]


def setup(app: Any) -> dict:
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-skip-member", _skip_member)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
