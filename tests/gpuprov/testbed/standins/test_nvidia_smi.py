"""nvidia-smi stand-in against the real captures' formats."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

SMI = "/usr/bin/nvidia-smi"

# Elements we emit that the two real XML captures (A100, MIG on, remapped_rows N/A) cannot
# show: the row-remapper counters that nvsmi_device_v12.dtd defines under <remapped_rows>
# and that H100/A100 report when the value is not N/A.
ALLOWED_EXTRA = {
    "gpu/remapped_rows/remapped_row_corr",
    "gpu/remapped_rows/remapped_row_unc",
    "gpu/remapped_rows/remapped_row_pending",
    "gpu/remapped_rows/remapped_row_failure",
    "gpu/remapped_rows/row_remapper_histogram",
    "gpu/remapped_rows/row_remapper_histogram/row_remapper_histogram_max",
    "gpu/remapped_rows/row_remapper_histogram/row_remapper_histogram_high",
    "gpu/remapped_rows/row_remapper_histogram/row_remapper_histogram_partial",
    "gpu/remapped_rows/row_remapper_histogram/row_remapper_histogram_low",
    "gpu/remapped_rows/row_remapper_histogram/row_remapper_histogram_none",
}


def paths(elem: ET.Element, prefix: str = "") -> dict[str, bool]:
    """path -> has children, for every element below elem."""
    out: dict[str, bool] = {}
    for child in elem:
        p = f"{prefix}{child.tag}"
        out[p] = out.get(p, False) or len(child) > 0
        out.update({k: v or out.get(k, False) for k, v in paths(child, p + "/").items()})
    return out


def installed(host, version: str = "580.95.05", **faults) -> None:
    host.extract("nvidia-utils-" + version.split(".")[0], version)
    host.extract("nvidia-persistenced", version)
    host.profile("hgx-h100-8", **faults)
    host.load_module(version)


def test_xml_schema_matches_real_captures(host, captures):
    installed(host)
    proc = host.run(SMI, "-q", "-x")
    assert proc.returncode == 0, proc.stderr
    assert "\n\t<gpu id=" in proc.stdout and "\n\t\t<product_name>" in proc.stdout  # tab-indented
    ours = ET.fromstring(proc.stdout)
    real: dict[str, bool] = {}
    for name in (
        "telegraf_a100-sxm4-80gb_4gpu_mig_535.54.03.xml",
        "netdata_a100-sxm4-40gb_1gpu_mig_passthrough_510.47.03.xml",
    ):
        for k, v in paths(ET.parse(captures / name).getroot()).items():
            real[k] = real.get(k, False) or v
    mine = paths(ours)
    unknown = set(mine) - set(real) - ALLOWED_EXTRA
    assert not unknown, f"elements not in the real schema: {sorted(unknown)}"
    for p, has_children in mine.items():
        # mig_devices is empty with MIG off; remapped_rows holds the counters above.
        if p in real and p not in ("gpu/mig_devices", "gpu/remapped_rows"):
            assert has_children == real[p], f"{p}: nesting differs from the real capture"
    assert ours.findtext("driver_version") == "580.95.05"
    assert ours.findtext("cuda_version") == "13.0"
    gpus = ours.findall("gpu")
    assert int(ours.findtext("attached_gpus")) == len(gpus) == 8
    assert gpus[0].get("id") == "00000000:18:00.0"
    assert gpus[0].findtext("product_name") == "NVIDIA H100 80GB HBM3"
    assert gpus[0].findtext("fabric/state") == "In Progress"
    assert len({g.findtext("uuid") for g in gpus}) == 8


def test_text_query_matches_real_layout(host, captures):
    installed(host)
    (host.root / "run/nvidia-sim/fabric-state").write_text("Completed\n")
    out = host.run(SMI, "-q").stdout
    real = (captures / "gpud_h100-80gb-hbm3_8gpu_q_535.183.01.txt").read_text()
    # The same label/colon layout: every "label : value" line of ours has its label in the real one.
    real_labels = {line.split(":")[0] for line in real.splitlines() if " : " in line}
    for line in out.splitlines():
        if " : " in line:
            assert line.split(":")[0] in real_labels, line
    fabric = "\n".join(out.splitlines()[out.splitlines().index("    Fabric") :][:3])
    completed = (
        (captures / "zenn-orimanabu_aws-p5-h100_q-fabric-grep_completed_570.133.20.txt")
        .read_text()
        .rstrip()
    )
    assert fabric == completed
    assert out.count("GPU 00000000:") == 8


def test_fabric_in_progress_format(host, captures):
    installed(host, fabric_in_progress=True)
    (host.root / "run/nvidia-sim/fabric-state").write_text("Completed\n")  # the fault wins
    out = host.run(SMI, "-q").stdout.splitlines()
    fabric = "\n".join(out[out.index("    Fabric") :][:3])
    assert (
        fabric
        == (captures / "zenn-orimanabu_aws-p5-h100_q-fabric-grep_in-progress_570.133.20.txt")
        .read_text()
        .rstrip()
    )


def test_query_gpu_csv_header_format(host, captures):
    installed(host)
    fields = "index,name,uuid,driver_version,pci.bus_id,memory.total,memory.used,temperature.gpu,utilization.gpu,ecc.errors.uncorrected.volatile.total,persistence_mode,power.draw,fabric.state"
    proc = host.run(SMI, f"--query-gpu={fields}", "--format=csv")
    assert proc.returncode == 0, proc.stdout
    header, *rows = proc.stdout.splitlines()
    real = (
        captures / "nvgpuexp_capture__linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
    ).read_text()
    real_header = next(
        line for line in real.splitlines() if line.startswith("timestamp, driver_version,")
    )
    real_cols = set(real_header.split(", "))
    for col in header.split(", "):
        assert col in real_cols, f"header {col!r} not as the real nvidia-smi writes it"
    assert "memory.total [MiB]" in header
    assert len(rows) == 8
    assert rows[0].split(", ")[3] == "580.95.05"
    assert re.fullmatch(r"\d+ MiB", rows[0].split(", ")[5])
    plain = host.run(
        SMI, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"
    ).stdout.splitlines()
    assert plain[0] == "0, 81559"
    bad = host.run(SMI, "--query-gpu=index,bogus", "--format=csv")
    assert bad.returncode == 2 and 'Field "bogus" is not a valid field to query.' in bad.stdout


def test_ecc_fault_and_missing_gpu(host):
    installed(host, ecc_uncorrectable={3: 2}, missing_gpus=1, retired_pages_pending=True)
    out = host.run(
        SMI,
        "--query-gpu=index,ecc.errors.uncorrected.volatile.total,remapped_rows.pending",
        "--format=csv,noheader",
    ).stdout
    assert out.splitlines() == [
        f"{i}, {2 if i == 3 else 0}, {'Yes' if i == 3 else 'No'}" for i in range(7)
    ]
    xml = ET.fromstring(host.run(SMI, "-q", "-x").stdout)
    assert xml.findtext("attached_gpus") == "7"


@pytest.mark.parametrize(
    ("loaded", "code", "message"),
    [
        (
            None,
            9,
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
        ),
        (
            "570.133.20",
            18,
            "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.95\n",
        ),
    ],
)
def test_driver_failures(host, loaded, code, message):
    installed(host)
    host.load_module(loaded)
    proc = host.run(SMI, "-q", "-x")
    assert (proc.returncode, proc.stdout) == (code, message)


def test_list_topo_and_bad_options(host, captures):
    installed(host)
    listing = host.run(SMI, "-L").stdout.splitlines()
    assert len(listing) == 8
    assert re.fullmatch(
        r"GPU 0: NVIDIA H100 80GB HBM3 \(UUID: GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\)",
        listing[0],
    )
    topo = host.run(SMI, "topo", "-m").stdout.splitlines()
    assert topo[0].startswith("\tGPU0\tGPU1")
    assert topo[1].split("\t")[1:9] == [" X "] + ["NV18"] * 7
    real_legend = (captures / "oyanghd_a100-sxm4-40gb_8gpu_topo-m_525.105.17.txt").read_text()
    assert (
        "  NV#  = Connection traversing a bonded set of # NVLinks" in topo
        and "  NV#  = Connection traversing a bonded set of # NVLinks" in real_legend
    )
    bad = host.run(SMI, "--frobnicate")
    assert bad.returncode == 2 and "Please run 'nvidia-smi -h' for help." in bad.stdout


def test_default_table_matches_real_layout(host, captures):
    installed(host)
    out = host.run(SMI).stdout.splitlines()
    real = (
        (captures / "nvgpuexp_capture__linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt")
        .read_text()
        .splitlines()
    )
    start = real.index(
        "+-----------------------------------------------------------------------------------------+"
    )
    real_table = real[start - 1 : start + 24]
    assert len(out[0]) == len(real_table[0])  # timestamp line, trailing blanks included
    assert out[1] == real_table[1]
    assert out[2] == real_table[2].replace("590.48.01", "580.95.05").replace("13.1 ", "13.0 ")
    assert out[3:8] == real_table[3:8]  # column headers
    gpu_rows = [line for line in out if re.match(r"\|\s+\d+  NVIDIA", line)]
    assert len(gpu_rows) == 8
    real_rows = real_table[8:12]
    for ours, theirs in zip(out[8:12], real_rows, strict=True):
        assert [m.start() for m in re.finditer(r"\|", ours)] == [
            m.start() for m in re.finditer(r"\|", theirs)
        ]
    assert out[9].split("|")[1].split() == [
        "N/A",
        out[9].split("|")[1].split()[1],
        "P0",
        out[9].split("|")[1].split()[3],
        "/",
        "700W",
    ]
    processes = next(i for i, line in enumerate(real) if line.startswith("| Processes:"))
    assert out[-7:] == real[processes - 1 : processes + 6]


def test_select_one_gpu(host):
    installed(host)
    one = ET.fromstring(host.run(SMI, "-q", "-x", "-i", "2").stdout)
    assert [g.get("id") for g in one.findall("gpu")] == ["00000000:3A:00.0"]
    assert one.findtext("attached_gpus") == "8"  # as the real -i output: all attached GPUs
    assert host.run(SMI, "-L", "-i", "9").returncode == 6
