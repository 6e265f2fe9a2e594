"""A small inventory module: the example file `agentls run` works on."""

from typing import Dict, List, Optional


class Item:
    def __init__(self, name, price, quantity):
        self.name = name
        self.price = price
        self.quantity = quantity


def total_value(items: List[Item]) -> float:
    total = 0
    for i in range(len(items)):
        total = total + items[i].price * items[i].quantity
    return total


def find_item(items: List[Item], name: str) -> Optional[Item]:
    for item in items:
        if item.name == name:
            return item
    return None


def restock(items: List[Item], amounts: Dict[str, int]) -> List[str]:
    missing = []
    for name in amounts:
        item = find_item(items, name)
        if item == None:
            missing.append(name)
        else:
            item.quantity = item.quantity + amounts[name]
    return missing
