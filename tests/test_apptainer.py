import csv

from gear_hpc.slurm.apptainer import INPUT_SLOTS, Mount, exec_argv, mount_option


def test_paths_with_commas_and_colons_survive_the_mount_syntax():
    option = mount_option(Mount("/data/a,b:c d", "/hyperai/input/input0", read_only=True))
    fields = next(csv.reader([option]))
    assert fields == ["type=bind", "src=/data/a,b:c d", "dst=/hyperai/input/input0", "ro"]


def test_layout_home_is_output_and_inputs_read_only():
    argv = exec_argv("apptainer", "/img.sif", "/w/home", {INPUT_SLOTS[2]: "/data/x"}, "/w/empty",
                     ["python3", "t.py"], gpu=True)
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--mount"]
    assert "type=bind,src=/w/home,dst=/hyperai/home" in mounts
    assert "type=bind,src=/w/home,dst=/output" in mounts
    assert "type=bind,src=/data/x,dst=/hyperai/input/input2,ro" in mounts
    assert "type=bind,src=/data/x,dst=/input2,ro" in mounts           # where OpenBayes puts it
    assert "type=bind,src=/w/empty,dst=/input0,ro" in mounts
    assert sum(m.endswith(",ro") for m in mounts) == 10
    assert argv[:3] == ["apptainer", "exec", "--containall"] and "--nv" in argv
    assert argv[-3:] == ["/img.sif", "python3", "t.py"]
    assert "--nv" not in exec_argv("apptainer", "/i", "/h", {}, "/e", ["x"], gpu=False)
