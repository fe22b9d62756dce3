"""`nvidia-smi -q -x` (XML, DTD nvsmi_device_v10..v12+) -> NvidiaSmiReport.

Strict where a wrong answer would be dangerous (root element, driver version, GPU count
matching <attached_gpus>, identity fields, counters that must be numbers) and tolerant
where drivers differ (missing optional sections, "N/A", old single_bit/double_bit ECC
layout vs the SRAM/DRAM layout of R470+ and the parity/SEC-DED split of R550+).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gpuprov.parsers import ParseError, is_na
from gpuprov.parsers.nvidia_smi_model import (
    EccErrors,
    Fabric,
    Gpu,
    NvidiaSmiReport,
    RemappedRows,
    RetiredPages,
    na_str,
    pci_id_from_nvsmi,
    to_bool,
    to_int,
)

SOURCE = "nvidia-smi -q -x"

__all__ = ["NvidiaSmiReport", "parse_nvidia_smi_xml"]


def parse_nvidia_smi_xml(text: str) -> NvidiaSmiReport:
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<nvidia_smi_log")
    if start < 0:
        snippet = text.strip().splitlines()[0][:120] if text.strip() else "empty output"
        raise ParseError(SOURCE, f"no <nvidia_smi_log> document found (got: {snippet!r})")
    # The DOCTYPE names an external DTD; ElementTree ignores it (never fetched).
    end = text.find("</nvidia_smi_log>", start)
    # stderr is merged into the captured output: drop anything after the document too.
    doc = text[start:] if end < 0 else text[start : end + len("</nvidia_smi_log>")]
    try:
        root = ET.fromstring(doc)
    except ET.ParseError as exc:
        raise ParseError(SOURCE, f"malformed XML: {exc}", exc.position[0]) from None
    if root.tag != "nvidia_smi_log":
        raise ParseError(SOURCE, f"root element is <{root.tag}>, expected <nvidia_smi_log>")

    driver = _text(root, "driver_version")
    if not driver:
        raise ParseError(SOURCE, "missing <driver_version>")
    gpu_elems = root.findall("gpu")
    attached = to_int(SOURCE, "attached_gpus", _text(root, "attached_gpus"))
    if attached is None:
        raise ParseError(SOURCE, "missing <attached_gpus>")
    # `-i N` prints one GPU under the full <attached_gpus>: fewer is allowed, more or none not.
    if len(gpu_elems) > attached or (attached and not gpu_elems):
        raise ParseError(
            SOURCE, f"<attached_gpus> says {attached} but {len(gpu_elems)} <gpu> elements follow"
        )
    gpus = tuple(_gpu(i, g) for i, g in enumerate(gpu_elems))
    return NvidiaSmiReport(
        driver_version=driver,
        cuda_version=na_str(_text(root, "cuda_version")),
        gpus=gpus,
        attached_gpus=attached,
    )


def _text(elem: ET.Element, path: str) -> str | None:
    found = elem.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _gpu(index: int, g: ET.Element) -> Gpu:
    bus_id = g.get("id") or _text(g, "pci/pci_bus_id")
    where = f"GPU {index} ({bus_id})"
    required = {}
    for name, path in (("product_name", "product_name"), ("uuid", "uuid")):
        value = _text(g, path)
        if not value:
            raise ParseError(SOURCE, f"{where}: missing <{path}>")
        required[name] = value
    if not bus_id:
        raise ParseError(SOURCE, f"GPU {index}: no id attribute and no <pci/pci_bus_id>")
    if not required["uuid"].startswith(("GPU-", "MIG-")):
        raise ParseError(SOURCE, f"{where}: <uuid> {required['uuid']!r} does not start with GPU-")
    mig_devices = g.find("mig_devices")
    return Gpu(
        index=index,
        pci_bus_id=bus_id,
        product_name=required["product_name"],
        uuid=required["uuid"],
        serial=na_str(_text(g, "serial")),
        pci_device_id=pci_id_from_nvsmi(_text(g, "pci/pci_device_id")),
        persistence_mode=to_bool(SOURCE, f"{where} persistence_mode", _text(g, "persistence_mode")),
        mig_mode=to_bool(SOURCE, f"{where} mig_mode", _text(g, "mig_mode/current_mig")),
        mig_devices=0 if mig_devices is None else len(mig_devices.findall("mig_device")),
        memory_total_mib=to_int(
            SOURCE, f"{where} fb_memory_usage", _text(g, "fb_memory_usage/total")
        ),
        ecc=_ecc(where, g.find("ecc_errors")),
        retired_pages=_retired(where, g.find("retired_pages")),
        remapped_rows=_remapped(where, g.find("remapped_rows")),
        fabric=_fabric(g.find("fabric")),
    )


def _ecc(where: str, ecc: ET.Element | None) -> EccErrors:
    if ecc is None:
        return EccErrors()
    values: dict[str, int | None] = {}
    for scope in ("volatile", "aggregate"):
        el = ecc.find(scope)
        if el is None:
            values[f"{scope}_dram"] = values[f"{scope}_sram"] = None
            continue
        name = f"{where} ecc_errors/{scope}"
        if el.find("double_bit") is not None:
            # Old schema (before R470): per-unit single_bit/double_bit counters with a total.
            dram = to_int(SOURCE, name, _text(el, "double_bit/device_memory"))
            total = to_int(SOURCE, name, _text(el, "double_bit/total"))
            values[f"{scope}_dram"] = dram
            values[f"{scope}_sram"] = None if total is None else total - (dram or 0)
            continue
        dram = to_int(SOURCE, name, _text(el, "dram_uncorrectable"))
        if el.find("sram_uncorrectable_parity") is not None:
            # R550+: SRAM uncorrectable split into parity and SEC-DED.
            parity = to_int(SOURCE, name, _text(el, "sram_uncorrectable_parity"))
            secded = to_int(SOURCE, name, _text(el, "sram_uncorrectable_secded"))
            sram = None if parity is None and secded is None else (parity or 0) + (secded or 0)
        else:
            sram = to_int(SOURCE, name, _text(el, "sram_uncorrectable"))
        if (
            el.find("dram_uncorrectable") is None
            and el.find("sram_uncorrectable") is None
            and (el.find("sram_uncorrectable_parity") is None)
        ):
            raise ParseError(SOURCE, f"{name}: no known ECC counters (schema changed?)")
        values[f"{scope}_dram"] = dram
        values[f"{scope}_sram"] = sram
    return EccErrors(
        volatile_dram_uncorrectable=values["volatile_dram"],
        volatile_sram_uncorrectable=values["volatile_sram"],
        aggregate_dram_uncorrectable=values["aggregate_dram"],
        aggregate_sram_uncorrectable=values["aggregate_sram"],
    )


def _retired(where: str, el: ET.Element | None) -> RetiredPages:
    if el is None or is_na(el.text) and len(el) == 0:
        return RetiredPages()
    name = f"{where} retired_pages"
    pend = [
        to_bool(SOURCE, name, _text(el, tag)) for tag in ("pending_blacklist", "pending_retirement")
    ]
    known = [p for p in pend if p is not None]
    return RetiredPages(
        single_bit_count=to_int(
            SOURCE, name, _text(el, "multiple_single_bit_retirement/retired_count")
        ),
        double_bit_count=to_int(SOURCE, name, _text(el, "double_bit_retirement/retired_count")),
        pending=any(known) if known else None,
    )


def _remapped(where: str, el: ET.Element | None) -> RemappedRows:
    if el is None or len(el) == 0:  # "<remapped_rows>N/A</remapped_rows>" before Ampere / in VMs
        return RemappedRows()
    name = f"{where} remapped_rows"
    return RemappedRows(
        correctable=to_int(SOURCE, name, _text(el, "remapped_row_corr")),
        uncorrectable=to_int(SOURCE, name, _text(el, "remapped_row_unc")),
        pending=to_bool(SOURCE, name, _text(el, "remapped_row_pending")),
        failure=to_bool(SOURCE, name, _text(el, "remapped_row_failure")),
    )


def _fabric(el: ET.Element | None) -> Fabric | None:
    if el is None:
        return None
    return Fabric(state=na_str(_text(el, "state")), status=na_str(_text(el, "status")))
