"""A Triton Python-backend model that serves a Hugging Face causal LM with transformers.

The serving plugin's Triton runtime (plugins/serving-triton) writes this file as
`model_repository/<served model name>/1/model.py`, next to a `config.pbtxt` that names the model
folder (`parameters.model_path`), the dtype and the default number of new tokens.

Tensors (every one with the batch dimension first; `max_batch_size` is at least 1):
  inputs   text_input   BYTES [1]  the prompt, or with chat_template=true a JSON list of
                                   {"role", "content"} messages that the tokenizer's chat template renders
           max_tokens   INT32 [1]  optional: new tokens at most (default: the config's max_new_tokens)
           temperature  FP32  [1]  optional: 0 or absent = greedy decoding, else sampling
           top_p        FP32  [1]  optional: nucleus sampling (with temperature > 0)
           seed         INT64 [1]  optional: the sampling seed
           chat_template BOOL [1]  optional: text_input is chat messages (see above)
  outputs  text_output        BYTES [1]  the generated text (without the prompt)
           prompt_tokens      INT32 [1]
           completion_tokens  INT32 [1]
           finish_reason      BYTES [1]  "stop" (end of sequence) or "length" (max_tokens reached)
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _optional(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _text(value):
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _error(error):
    """A bad request (ValueError: bad JSON, max_tokens < 1) is INVALID_ARG (HTTP 400), the rest INTERNAL."""
    message = f"{type(error).__name__}: {error}" if not isinstance(error, ValueError) else str(error)
    codes = pb_utils.TritonError
    code = getattr(codes, "INVALID_ARG" if isinstance(error, ValueError) else "INTERNAL", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.model_path = params["model_path"]
        self.max_new_tokens = int(params.get("max_new_tokens") or 128)
        dtype = params.get("dtype") or "auto"
        if args.get("model_instance_kind") == "GPU" and torch.cuda.is_available():
            self.device = torch.device("cuda", int(args.get("model_instance_device_id") or 0))
        else:
            self.device = torch.device("cpu")
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch_dtype)
        self.model.to(self.device)
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"serving-triton: loaded {self.model_path} on {self.device} "
            f"({sum(p.numel() for p in self.model.parameters())} parameters)"
        )

    def _prompt_ids(self, text, chat):
        if chat:
            messages = json.loads(text)
            if not isinstance(messages, list):
                raise ValueError("text_input must be a JSON list of messages when chat_template is true")
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("the model has no chat template; send a plain prompt")
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            # The template writes the special tokens itself.
            return self.tokenizer(rendered, add_special_tokens=False, return_tensors="pt").input_ids
        return self.tokenizer(text, return_tensors="pt").input_ids

    def _generate(self, text, chat, max_tokens, temperature, top_p, seed):
        torch = self.torch
        ids = self._prompt_ids(text, chat).to(self.device)
        kwargs = {"max_new_tokens": max_tokens, "pad_token_id": self.pad_token_id}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
            if top_p is not None and 0 < top_p < 1:
                kwargs["top_p"] = float(top_p)
            if seed is not None:
                torch.manual_seed(int(seed))
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[0, ids.shape[1]:]
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        stopped = len(new) > 0 and int(new[-1]) in eos_ids
        completion = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop" if stopped or len(new) < max_tokens else "length"
        return completion, int(ids.shape[1]), int(len(new)), finish

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                # Triton checks the number of inputs, not which: a request without text_input reaches here.
                text_input = pb_utils.get_input_tensor_by_name(request, "text_input")
                if text_input is None:
                    raise ValueError("the request has no text_input tensor (BYTES, shape [batch, 1])")
                texts = text_input.as_numpy().reshape(-1)
                rows = len(texts)

                def column(name, default):
                    value = _optional(request, name)
                    if value is None:
                        return [default] * rows
                    return list(value.reshape(-1)) if value.size == rows else [value.reshape(-1)[0]] * rows

                max_tokens = column("max_tokens", self.max_new_tokens)
                temperature = column("temperature", 0.0)
                top_p = column("top_p", None)
                seed = column("seed", None)
                chat = column("chat_template", False)
                results = []
                for i in range(rows):
                    n = int(max_tokens[i])
                    if n < 1:
                        raise ValueError("max_tokens must be at least 1")
                    results.append(
                        self._generate(_text(texts[i]), bool(chat[i]), n, float(temperature[i]), top_p[i], seed[i])
                    )
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[
                            pb_utils.Tensor("text_output", np.array([[r[0].encode("utf-8")] for r in results], dtype=np.object_)),
                            pb_utils.Tensor("prompt_tokens", np.array([[r[1]] for r in results], dtype=np.int32)),
                            pb_utils.Tensor("completion_tokens", np.array([[r[2]] for r in results], dtype=np.int32)),
                            pb_utils.Tensor("finish_reason", np.array([[r[3].encode("utf-8")] for r in results], dtype=np.object_)),
                        ]
                    )
                )
            except Exception as error:  # one bad request must not fail the others of a batch
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_error(error)))
        return responses

    def finalize(self):
        self.model = None
        self.tokenizer = None
