from cost_models import Accelerator, Workload, conv, evaluate


def test_flex_is_never_slower_than_its_members():
    wl = Workload((conv("c1", 3, 64, 64, R=7, stride=2, padding=3), conv("pw", 64, 128, 16)))
    flex = evaluate(wl, Accelerator(dataflow="flex")).total["cycles"]
    for df in ("ws", "os"):
        assert flex <= evaluate(wl, Accelerator(dataflow=df)).total["cycles"] * (1 + 1e-6)
