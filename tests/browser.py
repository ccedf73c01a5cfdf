"""Headless Chromium for the report's browser tests: load a page with every figure rendered and read
the marks its script leaves on ``<body>``; check that table cells do not break inside a word or number."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from mtlens.render.pdf import CHROMIUM_FLAGS

CELL_CHECK = """<script>(function(){
function check(){var broken=[],n=0;
document.querySelectorAll('table.table td, table.table th').forEach(function(el){
if(!el.getClientRects().length){return;}n++;
if(el.scrollWidth>el.clientWidth+1){broken.push('overflow:'+el.textContent);return;}
var walker=document.createTreeWalker(el,NodeFilter.SHOW_TEXT),node;
while((node=walker.nextNode())){var re=/\\S+/g,m;while((m=re.exec(node.data))){
var r=document.createRange();r.setStart(node,m.index);r.setEnd(node,m.index+m[0].length);
var tops={};Array.prototype.forEach.call(r.getClientRects(),function(q){if(q.width>0){tops[Math.round(q.top)]=1;}});
if(Object.keys(tops).length>1){broken.push(m[0]);}}}});return [n,broken];}
var shown=check();document.querySelectorAll('.table-wrap').forEach(function(t){t.classList.add('all');});
var all=check();document.querySelectorAll('.table-wrap').forEach(function(t){t.classList.remove('all');});
document.body.setAttribute('data-cells',shown[0]+'/'+all[0]);
var answers=document.getElementById('answers');
document.body.setAttribute('data-answers-top',answers?String(answers.getBoundingClientRect().top):'none');
document.body.setAttribute('data-broken-cells',String(shown[1].length+all[1].length));
document.body.setAttribute('data-broken-examples',shown[1].concat(all[1]).slice(0,5).join(' | ').replace(/"/g,"'"));
})();</script>"""
"""Counts the visible table cells (default view / "all columns") and the cells that break inside a word
or number: a cell whose content overflows it, or a whitespace-free token whose characters lie on more
than one line; and where the answers section starts (px from the top of the page)."""


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is missing: `make test` installs it (make chromium)"
    return path


def render_in_chromium(page: Path, tmp_path: Path, width: int = 1280) -> tuple[str, str]:
    """The DOM of ``page`` after loading it in headless Chromium ``width`` px wide with every figure
    rendered (``?render=all``), and Chromium's log of the page's console."""
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={width},900",
            "--virtual-time-budget=30000",
            "--dump-dom",
            page.as_uri() + "?render=all",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = "\n".join(line for line in result.stderr.splitlines() if ":CONSOLE" in line)
    return result.stdout, console


def with_cell_check(page: Path, out: Path, scope: str = "") -> Path:
    """A copy of ``page`` at ``out`` (same folder, so its links hold) whose body ends with :data:`CELL_CHECK`,
    checking the tables inside the CSS selector ``scope`` only (default: every table of the page)."""
    head, _, tail = page.read_text(encoding="utf-8").rpartition("</body>")  # (the inlined JavaScript has one too)
    check = CELL_CHECK.replace("'table.table td, table.table th'", f"'{scope} table.table td, {scope} table.table th'")
    out.write_text(head + check + "</body>" + tail, encoding="utf-8")
    return out


def page_marks(dom: str) -> dict[str, str]:
    body = re.search(r"<body( data-[^>]*)>", dom)  # (the inlined JavaScript mentions a bare <body> too)
    assert body, "the page's script did not mark <body>"
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))


def cell_texts(dom: str) -> list[str]:
    """The text of every cell of the report's tables (``<table class="table">``) in the DOM."""
    tables = re.findall(r'<table class="table">(.*?)</table>', dom, flags=re.S)
    return [re.sub(r"<[^>]+>", "", c) for t in tables for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", t, flags=re.S)]
