"""The hand-in's draft report, in the course's sections, filled with the run's numbers.

The draft is built once as sections of paragraphs, tables, lists and figures, then written twice:
``report.md`` (Markdown, readable on GitHub) and ``report.tex`` (LaTeX for the AAAI 2024 author kit,
which the course requires). The kit is not redistributed here: download AuthorKit24 from aaai.org,
and put its ``aaai24.sty`` beside report.tex; ``pdflatex report.tex`` then builds the report. The
references are written inline (``thebibliography``), so no .bib file or BibTeX run is needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .budget import ParameterReport
from .checkpoint import Checkpoint
from .files import atomic_write

STYLE_FILE = "aaai24.sty"  # from the AAAI 2024 author kit (AuthorKit24), beside report.tex
REFERENCES = {  # key: (authors, year, entry)
    "he2016": ("He et al.", "2016", "Kaiming He, Xiangyu Zhang, Shaoqing Ren and Jian Sun. Deep Residual Learning for "
                                 "Image Recognition. In CVPR, 2016."),
    "krizhevsky2009": ("Krizhevsky", "2009", "Alex Krizhevsky. Learning Multiple Layers of Features from Tiny Images. "
                                          "Technical report, University of Toronto, 2009."),
    "jordan2024": ("Jordan", "2024", "Keller Jordan. 94% on CIFAR-10 in 3.29 Seconds on a Single GPU. "
                                  "arXiv:2404.00498, 2024."),
}
FIGURE_CAPTIONS = {
    "training_curves.png": "Loss and accuracy per epoch.",
    "lr_schedule.png": "The learning rate over training.",
    "confusion_matrix.png": "Confusion matrix on the test images (rows: true class).",
    "per_class_accuracy.png": "Accuracy per class, without and with test-time augmentation.",
    "confident_mistakes.png": "The test images the network got wrong most confidently.",
    "reliability.png": "Accuracy against confidence on the test images, with the expected calibration error.",
    "robustness.png": "Accuracy on corrupted copies of the test images.",
}


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    path: str  # relative to the report
    caption: str


def write_reports(results: dict, report: ParameterReport, checkpoint: Checkpoint, out_dir: Path) -> None:
    """report.md and report.tex in ``out_dir``, from the same draft."""
    title, sections = draft(results, report, checkpoint, sorted(p.name for p in (out_dir / "plots").glob("*.png")))
    with atomic_write(out_dir / "report.md") as f:
        f.write(markdown(title, sections))
    with atomic_write(out_dir / "report.tex") as f:
        f.write(latex(title, sections))


def draft(results: dict, report: ParameterReport, checkpoint: Checkpoint, figures: list[str]) -> tuple[str, list]:
    """The report's title and its sections: (heading, [paragraph | Table | list of items | Figure])."""
    config = results["train_config"] or {}
    overview = (f"We trained the network {results['network']} on CIFAR-10 [krizhevsky2009], a residual network "
                f"[he2016] of {report.total:,} parameters ({report.verdict}), for {results['epochs']} epochs "
                f"({results['training_minutes']:.1f} minutes of training"
                + (f" on {results['device']}" if results["device"] else "") + f"). Measured: {accuracy_line(results)}.")
    architecture = Table(["part", "output (C x H x W)", "parameters", "share"],
                         [[s.name, " x ".join(map(str, s.output_shape)), f"{s.parameters:,}",
                           f"{s.parameters / report.total:.1%}"] for s in report.stages]
                         + [["total", "", f"{report.total:,}", "100%"]])
    trained = [["trained", f"{results['epochs']} epochs in {results['training_minutes']:.1f} minutes"
                           + (f" (the recipe asked for {results['length_asked']})" if results.get("length_asked") else "")]]
    settings = Table(["setting", "value"], trained + [[name, str(value)] for name, value in config.items()
                                                      if value is not None and name not in ("epochs", "minutes")])
    techniques = Table(["the course's technique", "used in this run"],
                       [[name, "yes" if used else "no"] for name, used in (results.get("course_techniques") or {}).items()])
    accuracies = Table(["measure", "accuracy"], _accuracy_rows(results))
    tried = ("(Draft: say here what you tried besides this run, such as other widths, depths, blocks or training "
             "settings, and what each changed, with its numbers.)")
    references = [f"[{key}] {text}" for key, (_, _, text) in REFERENCES.items()]
    return (f"A {report.total / 1e6:.2f}M-parameter ResNet for CIFAR-10", [
        ("Overview", [overview]),
        ("Methodology", ["Architecture: the stem, each stage and the head, with their output shapes and parameters.",
                         architecture, "Training: what the run did, then every setting of its recipe.", settings,
                         "The course's techniques, and which of them this run used.", techniques]),
        ("Results", [accuracies] + [Figure(f"plots/{name}", FIGURE_CAPTIONS.get(name, name)) for name in figures]),
        ("What we tried", [tried]),
        ("References", [references])])


def accuracy_line(results: dict) -> str:
    """The accuracies a hand-in states, in words; what could not be measured is said, never 'nan'."""
    parts = [f"validation accuracy {results['validation_accuracy']:.2%}" if results["validation_accuracy"] is not None
             else "no validation split"]
    if results["test_accuracy"]:
        test = results["test_accuracy"]
        parts.append(f"test accuracy {test['off']:.2%} ({test['flip']:.2%} with flip TTA, {test['flip-shift']:.2%} "
                     f"with flip-shift TTA) on {results['test_images']:,} images")
    else:
        parts.append("test accuracy not measured (no labelled test images given)")
    if results["submission_accuracy"] is not None:
        parts.append(f"submission accuracy {results['submission_accuracy']:.2%} against its labels")
    corruptions = results.get("corruptions")
    if corruptions:
        parts.append(f"mean corruption accuracy {corruptions['mean_corruption_accuracy']:.2%} on "
                     f"{corruptions['sets']} CIFAR-10-C-style corrupted sets of {corruptions['images']:,} test images")
    return "; ".join(parts)


def _accuracy_rows(results: dict) -> list[list[str]]:
    rows = [["validation", f"{results['validation_accuracy']:.2%}" if results["validation_accuracy"] is not None
             else "no validation split"]]
    for mode, label in (("off", "test"), ("flip", "test, flip TTA"), ("flip-shift", "test, flip-shift TTA")):
        rows.append([label, f"{results['test_accuracy'][mode]:.2%}" if results["test_accuracy"] else "not measured"])
    if results["submission_accuracy"] is not None:
        rows.append(["submission, against its labels", f"{results['submission_accuracy']:.2%}"])
    corruptions = results.get("corruptions")
    rows.append(["mean corruption accuracy (CIFAR-10-C-style, as predict scores)",
                 f"{corruptions['mean_corruption_accuracy']:.2%} (worst: {corruptions['worst_corruption']}, "
                 f"{corruptions['worst_mean']:.2%})" if corruptions else "not measured (notebook 04 measures it)"])
    prediction = results.get("prediction")
    if prediction:
        rows.append(["submission's prediction", f"{prediction['test_time_adaptation']}; TTA {prediction['tta']}"])
    return rows


def markdown(title: str, sections: list) -> str:
    """The draft as Markdown."""
    lines = [f"# {title}", ""]
    for heading, blocks in sections:
        lines += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, Table):
                lines += ["| " + " | ".join(block.header) + " |", "|" + " --- |" * len(block.header)]
                lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            elif isinstance(block, Figure):
                lines.append(f"![{block.caption}]({block.path})")
            elif isinstance(block, list):
                lines += [f"- {item}" for item in block]
            else:
                lines.append(_cite(block, "({authors} {year})"))
            lines.append("")
    return "\n".join(lines)


def latex(title: str, sections: list) -> str:
    """The draft as a LaTeX document for the AAAI 2024 author kit (its aaai24.sty beside it)."""
    body = []
    for heading, blocks in sections:
        if heading == "References":
            body += ["\\begin{thebibliography}{9}"]
            body += [f"\\bibitem[{tex(authors)}({year})]{{{key}}} {tex(text)}"  # natbib's author-year form
                     for key, (authors, year, text) in REFERENCES.items()]
            body += ["\\end{thebibliography}"]
            continue
        body.append(f"\\section{{{tex(heading)}}}")
        for block in blocks:
            body.append(_latex_block(block))
    return "\n".join([
        f"% The course's report format: the AAAI 2024 author kit. Put {STYLE_FILE} from AuthorKit24 (aaai.org)",
        "% beside this file, then run: pdflatex report.tex (twice, for the references).",
        "\\documentclass[letterpaper]{article}", "\\usepackage{aaai24}", "\\usepackage{times}", "\\usepackage{helvet}",
        "\\usepackage{courier}", "\\usepackage[hyphens]{url}", "\\usepackage{graphicx}", "\\urlstyle{rm}",
        "\\def\\UrlFont{\\rm}", "\\usepackage{natbib}", "\\usepackage{caption}", "\\frenchspacing",
        "\\setlength{\\pdfpagewidth}{8.5in}", "\\setlength{\\pdfpageheight}{11in}",
        "\\pdfinfo{/TemplateVersion (2024.1)}", "\\setcounter{secnumdepth}{0}",
        f"\\title{{{tex(title)}}}", "\\author{Your names}", "\\affiliations{Your university}",
        "\\begin{document}", "\\maketitle", *body, "\\end{document}", ""])


def _latex_block(block) -> str:
    if isinstance(block, Table):
        rows = [" & ".join(tex(cell) for cell in row) + " \\\\" for row in block.rows]
        return "\n".join(["\\begin{table}[h]", "\\centering\\small", f"\\begin{{tabular}}{{{'l' * len(block.header)}}}",
                          "\\hline", " & ".join(tex(h) for h in block.header) + " \\\\", "\\hline", *rows, "\\hline",
                          "\\end{tabular}", "\\end{table}"])
    if isinstance(block, Figure):
        return "\n".join(["\\begin{figure}[h]", "\\centering", f"\\includegraphics[width=\\columnwidth]{{{block.path}}}",
                          f"\\caption{{{tex(block.caption)}}}", "\\end{figure}"])
    if isinstance(block, list):
        return "\n".join(["\\begin{itemize}", *[f"\\item {tex(item)}" for item in block], "\\end{itemize}"])
    return _cite(tex(block), "\\citep{{{key}}}")


def tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    replacements = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
                    "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"}
    return "".join(replacements.get(c, c) for c in str(text))


def _cite(text: str, form: str) -> str:
    """Each '[key]' marker of REFERENCES written in ``form`` (with {key}, {authors} and {year})."""
    for key, (authors, year, _) in REFERENCES.items():
        text = text.replace(f"[{key}]", form.format(key=key, authors=authors, year=year))
    return text
