"""MkDocs hook: the study reports kept in docs/ are generated files whose Protocol section says only "ran on cpu
(x86_64, 2 threads)"; on the site each opens with a note naming the machine they were measured on, so that every
figure on a page says where it comes from. The files themselves are left as the study wrote them."""
from __future__ import annotations

ZEN1 = ("AMD EPYC Zen 1, 2 cores", "the 2-core reference CPU, AMD EPYC Zen 1 (family 23 model 1, AVX2, no AVX-512), "
        "torch 2.13.0+cpu, fp32")
MACHINES = {
    "quick-study/report.md": ZEN1,
    "quick-study-3seeds/report.md": ZEN1,
    "imagenet-style-quick/report.md": ZEN1,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    machine = MACHINES.get(page.file.src_uri)
    if machine is None:
        return markdown
    title, _, body = markdown.partition("\n")
    short, full = machine
    note = (f'!!! note "Measured on {short}"\n    Every figure, table and timing of this report was measured on '
            f"{full}. "
            f"The report is shown as the study wrote it.\n")
    return f"{title}\n\n{note}{body}"
