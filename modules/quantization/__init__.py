"""Weight quantization (bitsandbytes, optimum-quanto, torchao, NNCF for OpenVINO) behind one protocol."""
