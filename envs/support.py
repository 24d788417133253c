"""``agentrl/Support-v0``: a customer-service dialogue with policy rules and a shop database.

Each episode generates a small shop database from the seed (customers with email, zip
code and address; orders with item, price, status and delivery day) and a customer with
one request: refund an order, cancel an order, or change their address. Some requests
must be refused under the policy (a refund more than 30 days after delivery, cancelling an
order that has shipped). The customer is a simulated user (:mod:`agentrl.users`):
scripted by default, revealing their email, zip code, order id or new address only when
asked and answering yes to a confirmation question; or policy-backed with ``user=SPEC``.

Tools read and change the database: ``find_customer``, ``get_customer``, ``get_order``,
``cancel_order``, ``refund_order``, ``update_address``. The policy rules are in the
system prompt (:data:`POLICY`); the env records every broken rule.

Reward 1 when the episode ends (the user ends it, or the agent answers) with the database
equal to the goal state, no rule broken and, for a refused request, the order looked up
and the reason told to the user; else 0.
"""

from __future__ import annotations

import copy
import re
import zlib
from typing import Any

import numpy as np

from agentrl.dialogue import DialogueEnv, dump_state
from agentrl.env import Episode, Task
from agentrl.parsers import ToolCall
from agentrl.tool import Tool, ToolError
from agentrl.users import Fact, ScriptedUser

__all__ = ["SupportEnv", "POLICY", "KINDS"]

POLICY = """You are a customer-service agent of an online shop. Follow these rules:
1. Before anything else, authenticate the customer: ask for their email and zip code and call find_customer. Never look up or change anything before that.
2. Only look at or change the authenticated customer's own orders and account.
3. An order can be cancelled only while its status is pending or processing. Tell the customer when an order has already shipped and cannot be cancelled.
4. An order can be refunded only if it was delivered at most 30 days ago; the refund is the full price, to the original payment method. Tell the customer when refunds are only possible within 30 days of delivery.
5. Before any change (cancel, refund, address update), state exactly what you will do and get the customer's explicit confirmation (yes). One confirmation covers one change.
6. Do not make changes the customer did not ask for."""

#: Request kinds: (kind, the change is allowed).
KINDS = ("refund", "refund_late", "cancel", "cancel_shipped", "address")
_FIRST = ("Alma", "Bruno", "Cleo", "Dmitri", "Esme", "Felix", "Greta", "Hugo", "Ines", "Jonas")
_LAST = ("Adler", "Brandt", "Castro", "Duval", "Eklund", "Ferro", "Gomez", "Hale")
_ITEMS = ("desk lamp", "coffee grinder", "rain jacket", "yoga mat", "headphones", "backpack",
          "water bottle", "phone case", "wool scarf", "kettle")
_STREETS = ("Elm Street", "Harbor Road", "Mill Lane", "Park Avenue", "River Way")
_YES = re.compile(r"\b(yes|yeah|confirm|i confirm|go ahead)\b", re.IGNORECASE)
_WRITES = ("cancel_order", "refund_order", "update_address")


def _generate(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """A database and one request on it."""
    db: dict[str, Any] = {"customers": {}, "orders": {}}
    names = rng.choice(len(_FIRST) * len(_LAST), size=3, replace=False)
    for c, n in enumerate(names):
        first, last = _FIRST[int(n) // len(_LAST)], _LAST[int(n) % len(_LAST)]
        cid = f"C{100 + c * 7 + int(rng.integers(7))}"
        db["customers"][cid] = {
            "name": f"{first} {last}", "email": f"{first.lower()}.{last.lower()}@example.com",
            "zip": f"{int(rng.integers(10000, 99999))}",
            "address": f"{int(rng.integers(1, 200))} {rng.choice(_STREETS)}", "orders": []}
    for cid, cust in db["customers"].items():
        for _ in range(int(rng.integers(2, 4))):
            oid = f"#{int(rng.integers(10000, 99999))}"
            status = str(rng.choice(["pending", "processing", "shipped", "delivered"]))
            db["orders"][oid] = {
                "customer_id": cid, "item": str(rng.choice(_ITEMS)),
                "price": round(float(rng.integers(900, 25000)) / 100, 2), "status": status,
                "delivered_days_ago": int(rng.integers(1, 80)) if status == "delivered" else None,
                "refund": None}
            cust["orders"].append(oid)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    cid = sorted(db["customers"])[int(rng.integers(3))]
    oid = db["customers"][cid]["orders"][0]
    order = db["orders"][oid]
    order["status"], order["delivered_days_ago"] = {
        "refund": ("delivered", int(rng.integers(1, 31))),
        "refund_late": ("delivered", int(rng.integers(31, 120))),
        "cancel": (str(rng.choice(["pending", "processing"])), None),
        "cancel_shipped": ("shipped", None),
        "address": (order["status"], order["delivered_days_ago"]),
    }[kind]
    request = {"kind": kind, "customer_id": cid, "order_id": oid,
               "new_address": f"{int(rng.integers(1, 200))} {rng.choice(_STREETS)}, apt {int(rng.integers(1, 30))}"}
    return db, request


def _goal(db: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    goal = copy.deepcopy(db)
    order = goal["orders"][request["order_id"]]
    if request["kind"] == "refund":
        order["status"], order["refund"] = "refunded", order["price"]
    elif request["kind"] == "cancel":
        order["status"] = "cancelled"
    elif request["kind"] == "address":
        goal["customers"][request["customer_id"]]["address"] = request["new_address"]
    return goal


class SupportEnv(DialogueEnv):
    """Customer service with policy rules; reward for the goal database state, rules kept."""

    description = "Customer-service dialogue (refunds, cancellations, address changes) with policy rules and a simulated user."
    instructions = POLICY

    def __init__(self, max_turns: int = 12, user: Any = None, **kwargs: Any):
        self.db: dict[str, Any] = {"customers": {}, "orders": {}}
        self.authenticated: str | None = None
        self.violations: list[str] = []
        self._used_yes = -1
        tools = [Tool(f) for f in (self.find_customer, self.get_customer, self.get_order,
                                   self.cancel_order, self.refund_order, self.update_address)]
        super().__init__(tools, max_turns=max_turns, user=user, **kwargs)

    # -- tools ----------------------------------------------------------------------
    def find_customer(self, email: str, zip_code: str) -> str:
        """Authenticate a customer by email and zip code; returns their customer id and name.

        Args:
            email: The customer's email address.
            zip_code: The customer's zip code.
        """
        for cid, c in self.db["customers"].items():
            if c["email"] == email.strip().lower() and c["zip"] == zip_code.strip():
                self.authenticated = cid
                return f"customer_id: {cid}, name: {c['name']}"
        raise ToolError("no customer with this email and zip code")

    def get_customer(self, customer_id: str) -> str:
        """Show a customer's account: name, address and order ids.

        Args:
            customer_id: The id returned by find_customer, e.g. "C107".
        """
        c = self._customer(customer_id)
        return f"customer_id: {customer_id}, name: {c['name']}, address: {c['address']}, orders: {', '.join(c['orders'])}"

    def get_order(self, order_id: str) -> str:
        """Show an order: item, price, status and delivery.

        Args:
            order_id: The order id, e.g. "#12345".
        """
        o = self._order(order_id)
        delivered = f", delivered {o['delivered_days_ago']} days ago" if o["delivered_days_ago"] else ""
        refund = f", refunded {o['refund']:.2f}" if o["refund"] is not None else ""
        return f"order {self._oid(order_id)}: {o['item']}, price {o['price']:.2f}, status {o['status']}{delivered}{refund}"

    def cancel_order(self, order_id: str) -> str:
        """Cancel an order that has not shipped yet.

        Args:
            order_id: The order id, e.g. "#12345".
        """
        o = self._write_order(order_id, "cancel_order")
        if o["status"] not in ("pending", "processing"):
            self.violations.append(f"cancelled order {self._oid(order_id)} with status {o['status']}")
        o["status"] = "cancelled"
        return f"order {self._oid(order_id)} cancelled"

    def refund_order(self, order_id: str) -> str:
        """Refund a delivered order in full to the original payment method.

        Args:
            order_id: The order id, e.g. "#12345".
        """
        o = self._write_order(order_id, "refund_order")
        if o["status"] != "delivered" or (o["delivered_days_ago"] or 999) > 30:
            self.violations.append(f"refunded order {self._oid(order_id)} that is not eligible")
        o["status"], o["refund"] = "refunded", o["price"]
        return f"order {self._oid(order_id)} refunded: {o['price']:.2f}"

    def update_address(self, customer_id: str, address: str) -> str:
        """Change a customer's address.

        Args:
            customer_id: The customer id, e.g. "C107".
            address: The full new address.
        """
        c = self._customer(customer_id)
        self._check_write("update_address")
        c["address"] = address.strip()
        return f"address of {customer_id} updated"

    # -- rules ----------------------------------------------------------------------
    @staticmethod
    def _oid(order_id: str) -> str:
        return "#" + order_id.strip().lstrip("#")

    def _customer(self, customer_id: str) -> dict[str, Any]:
        if self.authenticated is None:
            raise ToolError("authenticate the customer first (find_customer)")
        c = self.db["customers"].get(customer_id.strip())
        if c is None:
            raise ToolError(f"no customer {customer_id[:40]!r}")
        if customer_id.strip() != self.authenticated:
            self.violations.append(f"accessed customer {customer_id.strip()} who is not authenticated")
        return c

    def _order(self, order_id: str) -> dict[str, Any]:
        if self.authenticated is None:
            raise ToolError("authenticate the customer first (find_customer)")
        o = self.db["orders"].get(self._oid(order_id))
        if o is None:
            raise ToolError(f"no order {order_id[:40]!r}")
        if o["customer_id"] != self.authenticated:
            self.violations.append(f"accessed order {self._oid(order_id)} of another customer")
        return o

    def _write_order(self, order_id: str, tool_name: str) -> dict[str, Any]:
        o = self._order(order_id)
        self._check_write(tool_name)
        return o

    def _check_write(self, tool_name: str) -> None:
        """Rule 5: the user's latest message is a yes not used for an earlier change."""
        last_user = max((i for i, m in enumerate(self.messages) if m["role"] == "user"), default=-1)
        if last_user <= self._used_yes or not _YES.search(str(self.messages[last_user].get("content") or "")):
            self.violations.append(f"{tool_name} without the customer's confirmation")
        self._used_yes = last_user

    # -- task, user, grading --------------------------------------------------------
    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        db, request = _generate(rng)
        self.db, self.authenticated, self.violations, self._used_yes = db, None, [], -1
        cust = db["customers"][request["customer_id"]]
        order = db["orders"][request["order_id"]]
        kind = request["kind"]
        verb = {"refund": "refund", "refund_late": "refund", "cancel": "cancel",
                "cancel_shipped": "cancel"}.get(kind)
        want = (f"I'd like to {verb} my {order['item']} order." if verb
                else "I moved and need to change the address on my account.")
        key = dump_state(request) + dump_state(db)
        return Task(prompt=want, answer=_goal(db, request),
                    id=f"support-{kind}-{zlib.crc32(key.encode()):08x}",
                    metadata={"request": request, "start": copy.deepcopy(db), "name": cust["name"]})

    def _facts(self, task: Task) -> dict[str, Fact]:
        req = task.metadata["request"]
        cust = task.metadata["start"]["customers"][req["customer_id"]]
        facts = {"email": Fact(cust["email"], ("email", "e-mail"), "My email is {value}."),
                 "zip": Fact(cust["zip"], ("zip", "zip code", "postal code", "postcode"), "My zip code is {value}.")}
        if req["kind"] == "address":
            facts["address"] = Fact(req["new_address"], ("new address",), "My new address is {value}.")
        else:
            facts["order"] = Fact(req["order_id"], ("order id", "order number", "which order"), "The order id is {value}.")
        return facts

    def scripted_user(self, task: Task) -> ScriptedUser:
        return ScriptedUser(task.prompt, self._facts(task), confirms=True)

    def user_instructions(self, task: Task) -> str:
        facts = "; ".join(f"your {k} is {f.value}" for k, f in self._facts(task).items())
        return (f"You are {task.metadata['name']}. {task.prompt} Give these details only when asked: "
                f"{facts}. Say yes if the agent asks you to confirm the change you asked for.")

    def grade_episode(self, task: Task, episode: Episode) -> float:
        if self.violations or dump_state(self.db) != dump_state(task.answer):
            return 0.0
        req = task.metadata["request"]
        if req["kind"] in ("refund_late", "cancel_shipped"):
            looked_up = any(c.name == "get_order" and c.ok and self._oid(str(c.arguments.get("order_id", ""))) == req["order_id"]
                            for c in episode.calls)
            must_say = "30 days" if req["kind"] == "refund_late" else "shipped"
            told = any(m["role"] == "assistant" and must_say in str(m.get("content") or "").lower()
                       for m in episode.messages)
            return 1.0 if looked_up and told else 0.0
        return 1.0

    def oracle_actions(self, task: Task) -> list[str]:
        req = task.metadata["request"]
        cust = task.metadata["start"]["customers"][req["customer_id"]]
        order = task.metadata["start"]["orders"][req["order_id"]]
        call = self.parser.render
        ask = "To help you, I first need to verify your identity: what are your email and zip code?"
        ask += " And what is your new address?" if req["kind"] == "address" else " And what is the order id?"
        lookup = [ToolCall("find_customer", {"email": cust["email"], "zip_code": cust["zip"]})]
        if req["kind"] == "address":
            lookup.append(ToolCall("get_customer", {"customer_id": req["customer_id"]}))
            change = f"I will change your address to {req['new_address']}. Do you confirm?"
            write = ToolCall("update_address", {"customer_id": req["customer_id"], "address": req["new_address"]})
        else:
            lookup.append(ToolCall("get_order", {"order_id": req["order_id"]}))
            if req["kind"] == "refund_late":
                return [ask, call(lookup), f"I'm sorry: your order {req['order_id']} was delivered "
                        f"{order['delivered_days_ago']} days ago, and refunds are only possible within 30 days of delivery."]
            if req["kind"] == "cancel_shipped":
                return [ask, call(lookup), f"I'm sorry: your order {req['order_id']} has already shipped, so it can no longer be cancelled."]
            verb = "refund" if req["kind"] == "refund" else "cancel"
            change = f"I will {verb} order {req['order_id']} ({order['item']}, {order['price']:.2f}). Do you confirm?"
            write = ToolCall(f"{verb}_order", {"order_id": req["order_id"]})
        return [ask, call(lookup), change, call([write]), "It is done. Thank you for contacting us."]
