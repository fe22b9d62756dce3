from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuprov.parsers import ParseError
from gpuprov.parsers.nvidia_smi_xml import parse_nvidia_smi_xml


def _telegraf(captures: Path) -> str:
    return (captures / "telegraf_a100-sxm4-80gb_4gpu_mig_535.54.03.xml").read_text()


def test_telegraf_a100_mig(captures):
    r = parse_nvidia_smi_xml(_telegraf(captures))
    assert (r.driver_version, r.cuda_version, r.attached_gpus) == ("535.54.03", "12.2", 4)
    assert len(r.gpus) == 1  # the repository kept one GPU of four
    g = r.gpus[0]
    assert g.product_name == "NVIDIA A100-SXM4-80GB"
    assert g.pci_bus_id == "00000000:01:00.0"
    assert g.uuid == "GPU-513536b6-7d19-9063-b049-1e69664bb298"
    assert g.serial == "1650522003820"
    assert g.pci_device_id == "10de:20b2"
    assert g.persistence_mode is False
    assert (g.mig_mode, g.mig_devices) == (True, 4)
    assert g.memory_total_mib == 81920
    assert g.ecc.volatile_uncorrectable == 0 and g.ecc.aggregate_uncorrectable == 0
    assert g.retired_pages.pending is None
    assert g.remapped_rows.pending is None  # <remapped_rows>N/A</remapped_rows> under MIG
    assert g.fabric is not None and g.fabric.state is None  # N/A on a non-NVSwitch board


def test_netdata_a100_passthrough(captures):
    text = (captures / "netdata_a100-sxm4-40gb_1gpu_mig_passthrough_510.47.03.xml").read_text()
    r = parse_nvidia_smi_xml(text)
    assert (r.driver_version, r.cuda_version, len(r.gpus)) == ("510.47.03", "11.6", 1)
    g = r.gpus[0]
    assert g.product_name == "NVIDIA A100-SXM4-40GB" and g.mig_devices == 2
    assert g.memory_total_mib == 40960
    # Volatile counters are N/A in this VM; aggregate ones are real zeros.
    assert g.ecc.volatile_uncorrectable is None
    assert g.ecc.aggregate_uncorrectable == 0
    assert g.fabric is None  # R510 prints no <fabric>


def test_tab_indented_like_real_output(captures):
    # Real nvidia-smi indents with tabs (the captures were re-indented with spaces).
    text = re.sub(
        r"^( {4})+", lambda m: "\t" * (len(m.group(0)) // 4), _telegraf(captures), flags=re.M
    )
    assert parse_nvidia_smi_xml(text).gpus[0].uuid.startswith("GPU-513536b6")


def test_stderr_noise_before_document(captures):
    text = (
        "WARNING: infoROM is corrupted at gpu 0000:01:00.0\n"
        + _telegraf(captures)
        + "WARNING: again\n"
    )
    assert parse_nvidia_smi_xml(text).driver_version == "535.54.03"


def test_new_schema_parity_secded_and_remapped_rows(captures):
    # R550+ layout (as in the 590 `-q` captures): SRAM uncorrectable split into parity and
    # SEC-DED; remapped rows structured. Built by editing the real document.
    text = _telegraf(captures)
    text = text.replace(
        "<sram_uncorrectable>0</sram_uncorrectable>\n                <dram_correctable>0",
        "<sram_uncorrectable_parity>2</sram_uncorrectable_parity>\n"
        "<sram_uncorrectable_secded>1</sram_uncorrectable_secded>\n"
        "                <dram_correctable>0",
        1,
    ).replace(
        "<dram_uncorrectable>0</dram_uncorrectable>",
        "<dram_uncorrectable>4</dram_uncorrectable>",
        1,
    )
    text = text.replace(
        "<remapped_rows>N/A</remapped_rows>",
        "<remapped_rows><remapped_row_corr>0</remapped_row_corr><remapped_row_unc>1</remapped_row_unc>"
        "<remapped_row_pending>Yes</remapped_row_pending><remapped_row_failure>No</remapped_row_failure>"
        "</remapped_rows>",
    )
    g = parse_nvidia_smi_xml(text).gpus[0]
    assert g.ecc.volatile_sram_uncorrectable == 3
    assert g.ecc.volatile_dram_uncorrectable == 4
    assert g.ecc.volatile_uncorrectable == 7
    assert g.ecc.aggregate_uncorrectable == 0
    assert (g.remapped_rows.uncorrectable, g.remapped_rows.pending, g.remapped_rows.failure) == (
        1,
        True,
        False,
    )


def test_old_schema_single_double_bit(captures):
    # Pre-R470 layout: <volatile><single_bit>..</single_bit><double_bit>..<total></double_bit>.
    old = (
        "<ecc_errors><volatile><single_bit><device_memory>5</device_memory><total>5</total></single_bit>"
        "<double_bit><device_memory>2</device_memory><register_file>1</register_file>"
        "<total>3</total></double_bit></volatile>"
        "<aggregate><single_bit><total>9</total></single_bit><double_bit>"
        "<device_memory>N/A</device_memory><total>N/A</total></double_bit></aggregate></ecc_errors>"
    )
    text = re.sub(r"<ecc_errors>.*?</ecc_errors>", old, _telegraf(captures), flags=re.S)
    text = text.replace(
        "<pending_retirement>N/A</pending_retirement>",
        "<pending_retirement>Yes</pending_retirement>",
    ).replace(
        "<double_bit_retirement>\n                <retired_count>N/A",
        "<double_bit_retirement>\n                <retired_count>2",
    )
    g = parse_nvidia_smi_xml(text).gpus[0]
    assert (g.ecc.volatile_dram_uncorrectable, g.ecc.volatile_sram_uncorrectable) == (2, 1)
    assert g.ecc.aggregate_uncorrectable is None
    assert g.retired_pages.pending is True
    assert g.retired_pages.double_bit_count == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: "", "no <nvidia_smi_log>"),
        (
            lambda t: "Failed to initialize NVML: Driver/library version mismatch\n",
            "version mismatch",
        ),
        (lambda t: t[: len(t) // 2], "malformed XML"),
        (lambda t: t.replace("nvidia_smi_log>", "other_log>"), "root element is <other_log>"),
        (
            lambda t: re.sub(r"<driver_version>.*?</driver_version>", "", t),
            "missing <driver_version>",
        ),
        (lambda t: t.replace("<attached_gpus>4<", "<attached_gpus>0<"), "says 0 but 1"),
        (lambda t: t.replace("<uuid>GPU-", "<uuid>XX-"), "does not start with GPU-"),
        (lambda t: re.sub(r"<product_name>.*?</product_name>", "", t), "missing <product_name>"),
        (
            lambda t: t.replace("<persistence_mode>Disabled<", "<persistence_mode>Sometimes<"),
            "persistence_mode: expected Enabled/Disabled",
        ),
        (
            lambda t: t.replace("<dram_uncorrectable>0<", "<dram_uncorrectable>many<", 1),
            "expected a number, got 'many'",
        ),
        (
            lambda t: re.sub(
                r"<volatile>\s*<sram_correctable>.*?</volatile>",
                "<volatile><foo>1</foo></volatile>",
                t,
                flags=re.S,
            ),
            "no known ECC counters",
        ),
    ],
)
def test_garbage_and_drift_raise(captures, edit, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_nvidia_smi_xml(edit(_telegraf(captures)))
