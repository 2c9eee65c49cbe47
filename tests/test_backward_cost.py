"""The DEQ cost measurement: its memory counters see what they should (no timings here)."""

import torch

from deblur_edu.experiments.ch4_backward_cost import allocator_peak_bytes, memory_modes, problem, saved_tensor_bytes


def test_saved_tensor_bytes_counts_each_storage_once():
    x = torch.rand(256, 256, requires_grad=True)

    def step():
        (x * x).sum().backward()  # saves x (twice, same storage)

    assert saved_tensor_bytes(step) == 256 * 256 * 4


def test_allocator_peak_sees_no_grad_buffers():
    def step():
        with torch.no_grad():
            buffers = [torch.ones(512, 512) for _ in range(4)]  # 4 MiB that autograd never saves
            del buffers

    assert saved_tensor_bytes(step) == 0
    peak = allocator_peak_bytes(step, torch.device("cpu"))
    assert peak is None or peak >= 4 * 512 * 512 * 4


def test_deq_memory_is_flat_in_the_iterations_and_unrolled_memory_grows():
    batch = problem(24, 1, torch.device("cpu"))
    cfg = {"features": 4, "depth": 3, "form": "gradient", "step_size": 0.5, "tol": 1e-3, "max_iter": 50}
    rows = memory_modes(["jfb", "implicit-anderson", "unrolled"], [2, 8], cfg, batch, torch.device("cpu"))
    saved = {(r["mode"], r["forward_iterations"]): r["saved_bytes"] for r in rows}
    assert saved[("jfb", 8)] == saved[("jfb", 2)]
    assert saved[("implicit-anderson", 8)] == saved[("implicit-anderson", 2)]
    assert saved[("unrolled", 8)] > 3 * saved[("unrolled", 2)]


def test_the_cost_model_is_the_preset_or_a_checkpoints(monkeypatch, tmp_path):
    from deblur_edu.experiments.ch4_backward_cost import build, model_and_weights
    from deblur_edu.learned import DEQ
    from deblur_edu.zoo import shipped as zoo_shipped
    from deblur_edu.zoo.checkpoints import save_model
    from deblur_edu.train import load_config

    cfg, state = model_and_weights(None)
    assert cfg == load_config("deq", "cpu")["model"] and state is None
    small = {"features": 4, "depth": 3, "form": "gradient", "precondition": True, "strength": 0.05}
    trained = DEQ(**small)
    with torch.no_grad():
        trained.log_strength.fill_(-1.0)
    save_model(tmp_path / "deq-test", trained, {"model_name": "deq", "config": {"model": small}})
    monkeypatch.setattr(zoo_shipped, "WEIGHTS_DIR", tmp_path)
    cfg, state = model_and_weights("deq-test")
    assert cfg == small
    model = build("implicit-anderson", cfg, torch.device("cpu"), state=state)
    assert model.backward == "implicit-anderson" and float(model.log_strength.detach()) == -1.0
