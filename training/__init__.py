"""Training side: LeNet-family CNNs on 28x28 medical or MNIST-format images.

Produces exactly what the registry anchors (a safetensors checkpoint and a canonical model card)
and never imports the registry.
"""
