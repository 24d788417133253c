"""tau2-bench retail domain tools, written for agentrl from the domain's data and policy.

Tool names and arguments are those of the tau2 tasks' gold actions; each tool enforces the
order-status and payment rules of the retail policy and acts on an
:class:`~envs.tau2.db.OverlayDB` of the retail database (products, users, orders).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from agentrl.envs.tau2.airline import calculate, transfer_to_human_agents
from agentrl.envs.tau2.db import OverlayDB
from agentrl.tool import Tool, ToolError

__all__ = ["RetailTools"]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class RetailTools:
    """The retail tools on one episode's database."""

    def __init__(self, db: OverlayDB) -> None:
        self.db = db

    def tools(self) -> list[Tool]:
        fns = [calculate, self.cancel_pending_order, self.exchange_delivered_order_items,
               self.find_user_id_by_name_zip, self.find_user_id_by_email, self.get_order_details,
               self.get_product_details, self.get_user_details, self.list_all_product_types,
               self.modify_pending_order_address, self.modify_pending_order_items,
               self.modify_pending_order_payment, self.modify_user_address,
               self.return_delivered_order_items, transfer_to_human_agents]
        return [Tool(f) for f in fns]

    # -- helpers ----------------------------------------------------------------------
    def _method(self, user_id: str, method_id: str) -> dict[str, Any]:
        method = self.db.get("users", user_id, "user")["payment_methods"].get(method_id)
        if method is None:
            raise ToolError("payment method not found")
        return method

    def _adjust_gift_card(self, user_id: str, method_id: str, delta: float) -> None:
        card = self.db.edit("users", user_id)["payment_methods"][method_id]
        card["balance"] = round(card["balance"] + delta, 2)

    @staticmethod
    def _check_items(order: dict[str, Any], item_ids: list[str]) -> None:
        have = [i["item_id"] for i in order["items"]]
        for item_id in item_ids:
            if item_ids.count(item_id) > have.count(item_id):
                raise ToolError(f"item {item_id} not found in the order")

    def _variant(self, product_id: str, item_id: str) -> dict[str, Any]:
        variant = self.db.get("products", product_id, "product")["variants"].get(item_id)
        if variant is None or not variant["available"]:
            raise ToolError(f"new item {item_id} not found or not available")
        return variant

    def _price_change(self, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str]) -> float:
        if len(item_ids) != len(new_item_ids):
            raise ToolError("the number of items to be exchanged should match")
        self._check_items(order, item_ids)
        diff = 0.0
        for old, new in zip(item_ids, new_item_ids, strict=True):
            item = next(i for i in order["items"] if i["item_id"] == old)
            diff += self._variant(item["product_id"], new)["price"] - item["price"]
        return round(diff, 2)

    # -- tools ------------------------------------------------------------------------
    def cancel_pending_order(self, order_id: str, reason: Literal["no longer needed", "ordered by mistake"]) -> str:
        """Cancel a pending order. If the order is already processed or delivered, it cannot be cancelled. The agent needs to explain the cancellation detail and ask for explicit user confirmation (yes/no) to proceed. If the user confirms, the order status will be changed to 'cancelled' and the payment will be refunded. The refund will be added to the user's gift card balance immediately if the payment was made using a gift card, otherwise the refund would take 5-7 business days to process.

        Args:
            order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.
            reason: The reason for cancellation, which should be either 'no longer needed' or 'ordered by mistake'.
        """
        order = self.db.get("orders", order_id, "order")
        if order["status"] != "pending":
            raise ToolError("non-pending order cannot be cancelled")
        refunds = [{"transaction_type": "refund", "amount": p["amount"], "payment_method_id": p["payment_method_id"]}
                   for p in order["payment_history"]]
        for p in order["payment_history"]:
            if self._method(order["user_id"], p["payment_method_id"])["source"] == "gift_card":
                self._adjust_gift_card(order["user_id"], p["payment_method_id"], p["amount"])
        o = self.db.edit("orders", order_id)
        o["status"], o["cancel_reason"] = "cancelled", reason
        o["payment_history"] += refunds
        return _json(o)

    def exchange_delivered_order_items(self, order_id: str, item_ids: list[str], new_item_ids: list[str],
                                       payment_method_id: str) -> str:
        """Exchange items in a delivered order to new items of the same product type. For a delivered order, return or exchange can be only done once by the agent. The agent needs to explain the exchange detail and ask for explicit user confirmation (yes/no) to proceed.

        Args:
            order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.
            item_ids: The item ids to be exchanged, each such as '1008292230'. There could be duplicate items in the list.
            new_item_ids: The item ids to be exchanged for, each such as '1008292230'. There could be duplicate items in the list. Each new item id should match the item id in the same position and be of the same product.
            payment_method_id: The payment method id to pay or receive refund for the item price difference, such as 'gift_card_0000000' or 'credit_card_0000000'. These can be looked up from the user or order details.
        """
        order = self.db.get("orders", order_id, "order")
        if order["status"] != "delivered":
            raise ToolError("non-delivered order cannot be exchanged")
        diff = self._price_change(order, item_ids, new_item_ids)
        method = self._method(order["user_id"], payment_method_id)
        if method["source"] == "gift_card" and method["balance"] < diff:
            raise ToolError("insufficient gift card balance to pay for the price difference")
        o = self.db.edit("orders", order_id)
        o.update({"status": "exchange requested", "exchange_items": sorted(item_ids),
                  "exchange_new_items": sorted(new_item_ids), "exchange_payment_method_id": payment_method_id,
                  "exchange_price_difference": diff})
        return _json(o)

    def find_user_id_by_name_zip(self, first_name: str, last_name: str, zip: str) -> str:
        """Find user id by first name, last name, and zip code. If the user is not found, the function will return an error message. By default, find user id by email, and only call this function if the user is not found by email or cannot remember email.

        Args:
            first_name: The first name of the customer, such as 'John'.
            last_name: The last name of the customer, such as 'Doe'.
            zip: The zip code of the customer, such as '12345'.
        """
        for user_id, u in self.db.items("users"):
            if (u["name"]["first_name"].lower() == first_name.lower()
                    and u["name"]["last_name"].lower() == last_name.lower() and u["address"]["zip"] == zip):
                return user_id
        raise ToolError("user not found")

    def find_user_id_by_email(self, email: str) -> str:
        """Find user id by email. If the user is not found, the function will return an error message.

        Args:
            email: The email of the user, such as 'something@example.com'.
        """
        for user_id, u in self.db.items("users"):
            if u["email"].lower() == email.lower():
                return user_id
        raise ToolError("user not found")

    def get_order_details(self, order_id: str) -> str:
        """Get the status and details of an order.

        Args:
            order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.
        """
        return _json(self.db.get("orders", order_id, "order"))

    def get_product_details(self, product_id: str) -> str:
        """Get the inventory details of a product.

        Args:
            product_id: The product id, such as '6086499569'. Be careful the product id is different from the item id.
        """
        return _json(self.db.get("products", product_id, "product"))

    def get_user_details(self, user_id: str) -> str:
        """Get the details of a user, including their orders.

        Args:
            user_id: The user id, such as 'sara_doe_496'.
        """
        return _json(self.db.get("users", user_id, "user"))

    def list_all_product_types(self) -> str:
        """List the name and product id of all product types. Each product type has a variety of different items with unique item ids and options. There are only 50 product types in the store."""
        return json.dumps({p["name"]: pid for pid, p in self.db.items("products")}, sort_keys=True)

    def modify_pending_order_address(self, order_id: str, address1: str, address2: str, city: str,
                                     state: str, country: str, zip: str) -> str:
        """Modify the shipping address of a pending order. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.

        Args:
            order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.
            address1: The first line of the address, such as '123 Main St'.
            address2: The second line of the address, such as 'Apt 1' or ''.
            city: The city, such as 'San Francisco'.
            state: The state, such as 'CA'.
            country: The country, such as 'USA'.
            zip: The zip code, such as '12345'.
        """
        if "pending" not in self.db.get("orders", order_id, "order")["status"]:
            raise ToolError("non-pending order cannot be modified")
        o = self.db.edit("orders", order_id)
        o["address"] = {"address1": address1, "address2": address2, "city": city, "country": country,
                        "state": state, "zip": zip}
        return _json(o)

    def modify_pending_order_items(self, order_id: str, item_ids: list[str], new_item_ids: list[str],
                                   payment_method_id: str) -> str:
        """Modify items in a pending order to new items of the same product type. For a pending order, this function can only be called once. The agent needs to explain the exchange detail and ask for explicit user confirmation (yes/no) to proceed.

        Args:
            order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.
            item_ids: The item ids to be modified, each such as '1008292230'. There could be duplicate items in the list.
            new_item_ids: The item ids to be modified for, each such as '1008292230'. There could be duplicate items in the list. Each new item id should match the item id in the same position and be of the same product.
            payment_method_id: The payment method id to pay or receive refund for the item price difference, such as 'gift_card_0000000' or 'credit_card_0000000'. These can be looked up from the user or order details.
        """
        order = self.db.get("orders", order_id, "order")
        if order["status"] != "pending":
            raise ToolError("non-pending order cannot be modified")
        if any(a == b for a, b in zip(item_ids, new_item_ids, strict=False)):
            raise ToolError("the new item id should be different from the old item id")
        diff = self._price_change(order, item_ids, new_item_ids)
        method = self._method(order["user_id"], payment_method_id)
        if method["source"] == "gift_card" and method["balance"] < diff:
            raise ToolError("insufficient gift card balance to pay for the new item")
        if method["source"] == "gift_card":
            self._adjust_gift_card(order["user_id"], payment_method_id, -diff)
        o = self.db.edit("orders", order_id)
        o["payment_history"].append({"transaction_type": "payment" if diff > 0 else "refund",
                                     "amount": abs(diff), "payment_method_id": payment_method_id})
        for old, new in zip(item_ids, new_item_ids, strict=True):
            item = next(i for i in o["items"] if i["item_id"] == old)
            variant = self._variant(item["product_id"], new)
            item.update({"item_id": new, "price": variant["price"], "options": dict(variant["options"])})
        o["status"] = "pending (item modified)"
        return _json(o)

    def modify_pending_order_payment(self, order_id: str, payment_method_id: str) -> str:
        """Modify the payment method of a pending order. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.

        Args:
            order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.
            payment_method_id: The payment method id to pay or receive refund for the item price difference, such as 'gift_card_0000000' or 'credit_card_0000000'. These can be looked up from the user or order details.
        """
        order = self.db.get("orders", order_id, "order")
        if "pending" not in order["status"]:
            raise ToolError("non-pending order cannot be modified")
        method = self._method(order["user_id"], payment_method_id)
        history = order["payment_history"]
        if len(history) != 1 or history[0]["transaction_type"] != "payment":
            raise ToolError("there should be exactly one payment for a pending order")
        old_id, amount = history[0]["payment_method_id"], history[0]["amount"]
        if old_id == payment_method_id:
            raise ToolError("the new payment method should be different from the current one")
        if method["source"] == "gift_card" and method["balance"] < amount:
            raise ToolError("insufficient gift card balance to pay for the order")
        o = self.db.edit("orders", order_id)
        o["payment_history"] += [
            {"transaction_type": "payment", "amount": amount, "payment_method_id": payment_method_id},
            {"transaction_type": "refund", "amount": amount, "payment_method_id": old_id}]
        if method["source"] == "gift_card":
            self._adjust_gift_card(order["user_id"], payment_method_id, -amount)
        if self._method(order["user_id"], old_id)["source"] == "gift_card":
            self._adjust_gift_card(order["user_id"], old_id, amount)
        return _json(o)

    def modify_user_address(self, user_id: str, address1: str, address2: str, city: str, state: str,
                            country: str, zip: str) -> str:
        """Modify the default address of a user. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.

        Args:
            user_id: The user id, such as 'sara_doe_496'.
            address1: The first line of the address, such as '123 Main St'.
            address2: The second line of the address, such as 'Apt 1' or ''.
            city: The city, such as 'San Francisco'.
            state: The state, such as 'CA'.
            country: The country, such as 'USA'.
            zip: The zip code, such as '12345'.
        """
        u = self.db.edit("users", user_id, "user")
        u["address"] = {"address1": address1, "address2": address2, "city": city, "country": country,
                        "state": state, "zip": zip}
        return _json(u)

    def return_delivered_order_items(self, order_id: str, item_ids: list[str], payment_method_id: str) -> str:
        """Return some items of a delivered order. The order status will be changed to 'return requested'. The agent needs to explain the return detail and ask for explicit user confirmation (yes/no) to proceed. The user will receive follow-up email for how and where to return the item.

        Args:
            order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.
            item_ids: The item ids to be returned, each such as '1008292230'. There could be duplicate items in the list.
            payment_method_id: The payment method id to pay or receive refund for the item price difference, such as 'gift_card_0000000' or 'credit_card_0000000'. These can be looked up from the user or order details.
        """
        order = self.db.get("orders", order_id, "order")
        if order["status"] != "delivered":
            raise ToolError("non-delivered order cannot be returned")
        method = self._method(order["user_id"], payment_method_id)
        if method["source"] != "gift_card" and payment_method_id != order["payment_history"][0]["payment_method_id"]:
            raise ToolError("payment method should be the original payment method")
        self._check_items(order, item_ids)
        o = self.db.edit("orders", order_id)
        o.update({"status": "return requested", "return_items": sorted(item_ids),
                  "return_payment_method_id": payment_method_id})
        return _json(o)
