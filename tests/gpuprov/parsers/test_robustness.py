"""Any input gives a result or a ParseError, never another exception (the CLI turns
ParseError into a clear message; anything else would be a traceback)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nvidia_smi_text import parse_nvidia_smi_text  # tests/support

from gpuprov.facts.host_state import parse_host_state
from gpuprov.parsers import ParseError
from gpuprov.parsers.dcgmi_diag import parse_dcgmi_diag
from gpuprov.parsers.lspci import parse_lspci
from gpuprov.parsers.nvidia_smi_xml import parse_nvidia_smi_xml
from gpuprov.parsers.system import parse_df_free_bytes, parse_dpkg_query, parse_os_release
from gpuprov.parsers.topo import parse_topo_matrix

PARSERS = [
    parse_nvidia_smi_xml, parse_nvidia_smi_text, parse_topo_matrix, parse_dcgmi_diag, parse_lspci, parse_os_release, parse_dpkg_query,
    parse_df_free_bytes, parse_host_state,
]  # fmt: skip
# Text made of the characters these formats are built from, so inputs get past line one.
ALPHABET = st.sampled_from(
    list('GPU 0123456789abcdef:.|-+<>/=\t\n"[]()XNV#@_')
    + ["Driver Version : ", "<nvidia_smi_log>", "@@gpuprov:begin os-release\n", "\n    "]
)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.lists(ALPHABET, max_size=60).map("".join))
def test_only_parse_errors(parser, text):
    with contextlib.suppress(ParseError):
        parser(text)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
def test_truncated_captures(parser, captures):
    # Every prefix-cut of a real capture: result or ParseError.
    for path in sorted(captures.glob("*"))[:14]:
        text = path.read_text()
        for cut in range(0, len(text), max(1, len(text) // 12)):
            with contextlib.suppress(ParseError):
                parser(text[:cut])
