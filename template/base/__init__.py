from template.base.miner import BaseMinerNeuron
from template.base.neuron import BaseNeuron
from template.base.validator import BaseValidatorNeuron

__all__ = ["BaseNeuron", "BaseMinerNeuron", "BaseValidatorNeuron"]
