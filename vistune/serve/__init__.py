"""Serving an export with vLLM's own OpenAI-compatible server (`vistune serve`)."""

from vistune.serve.command import ServeError, ServeSpec, curl_line, vllm_args, vllm_launcher

__all__ = ["ServeError", "ServeSpec", "curl_line", "vllm_args", "vllm_launcher"]
