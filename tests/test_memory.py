"""The T4 memory plan (`zhllm.runtime.memory_plan`) against memory measured on the CPU, and every colab stage's plan.

Measured: weights, gradients and AdamW states as the bytes of the tensors themselves; activations as the
tensors autograd saves for the backward pass (a saved-tensors hook, each storage counted once, parameters
left out), which is what training holds between forward and backward beyond the weights. The CPU runs fp32,
so this checks the fp32 terms; the fp16/4-bit extras the plan adds for a T4 are described in its docstring.
"""
import pytest
import torch
from peft import get_peft_model, prepare_model_for_kbit_training

from zhllm import cpt, dpo, runtime, sft
from zhllm.modeling import load_causal_lm

SHAPE = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=1000)
RUN = dict(lora_r=8, embeddings="full", batch_size=2, seq_len=64, compute_dtype=torch.float32)
TOLERANCE = 0.05


def _model(checkpointing=False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, attn_implementation="sdpa", **SHAPE))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, cpt.lora_config(RUN["lora_r"], 16, RUN["embeddings"])).train()


def _bytes(tensors) -> int:
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def _saved_for_backward(model, ids) -> int:
    params = {p.data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        if t.data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids).loss.backward()
    return sum(saved.values())


def test_weights_gradients_and_adam_states_match_the_plan():
    model = _model()
    ids = torch.randint(0, SHAPE["vocab_size"], (RUN["batch_size"], RUN["seq_len"]))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    states = [t for s in optimizer.state.values() for t in s.values() if t.dim() > 0]
    measured = _bytes(model.parameters()) + _bytes(p.grad for p in trainable) + _bytes(states)
    plan = runtime.memory_plan(SHAPE, quantization=None, gradient_checkpointing=False, **RUN)
    assert measured == pytest.approx(plan["weights"] + plan["trainable_weights_grads_adam"], rel=0.01)


def test_nf4_weights_match_the_plan(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, **SHAPE)).save_pretrained(tmp_path)
    model = prepare_model_for_kbit_training(load_causal_lm(str(tmp_path), "4bit", torch.float32),
                                            use_gradient_checkpointing=False)
    states = [s for m in model.modules() if hasattr(getattr(m, "weight", None), "quant_state")
              for s in (m.weight.quant_state.absmax, m.weight.quant_state.state2.absmax)]
    measured = _bytes(model.parameters()) + _bytes(states)
    plan = runtime.memory_plan(SHAPE, quantization="4bit", gradient_checkpointing=False, **RUN)
    assert measured == pytest.approx(plan["weights"], rel=TOLERANCE)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activations_match_the_plan(checkpointing):
    ids = torch.randint(0, SHAPE["vocab_size"], (RUN["batch_size"], RUN["seq_len"]))
    measured = _saved_for_backward(_model(checkpointing), ids)
    plan = runtime.memory_plan(SHAPE, quantization=None, gradient_checkpointing=checkpointing, **RUN)
    expected = plan["activations"] + ids.numel() * SHAPE["vocab_size"] * 4  # + the saved fp32 log-softmax
    if checkpointing:  # the layer being recomputed exists only inside the backward pass, not between
        no_checkpoints = runtime.memory_plan(SHAPE, quantization=None, gradient_checkpointing=False, **RUN)
        final = ids.numel() * SHAPE["hidden_size"] * 8
        expected -= (no_checkpoints["activations"] - final) / SHAPE["num_hidden_layers"]
    assert measured == pytest.approx(expected, rel=TOLERANCE)


@pytest.mark.parametrize("stage, module", [("cpt", cpt), ("sft", sft), ("dpo", dpo)])
def test_every_colab_stage_fits_a_t4(stage, module):
    plan = runtime.stage_memory_plan(stage, module.SETTINGS["colab"])
    assert plan["total"] < runtime.T4_BUDGET_GIB * runtime.GIB, runtime.describe_memory_plan(plan)


def test_continued_pretraining_needs_gradient_checkpointing_on_a_t4():
    without = runtime.stage_memory_plan("cpt", {**cpt.SETTINGS["colab"], "gradient_checkpointing": False})
    assert without["total"] > runtime.T4_BUDGET_GIB * runtime.GIB
