"""tau2-bench airline domain tools, written for agentrl from the domain's data and policy.

Tool names and arguments are those of the tau2 tasks' gold actions; the rules each tool
enforces (seats, prices, payments, certificates) follow the airline policy. The tools act
on an :class:`~envs.tau2.db.OverlayDB` of the airline database (flights, users,
reservations). The simulated "now" is the policy's 2024-05-15 15:00:00 EST.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from agentrl.envs.tau2.db import OverlayDB
from agentrl.tool import Tool, ToolError
from agentrl.tools.calculator import evaluate

__all__ = ["AirlineTools"]

NOW = "2024-05-15T15:00:00"
_NEW_RESERVATION_IDS = ("HATHAT", "HATHAU", "HATHAV")
_NEW_CERTIFICATE_IDS = ("certificate_3221322", "certificate_3221323", "certificate_3221324")
_AIRPORTS = {"SFO": "San Francisco", "JFK": "New York", "LAX": "Los Angeles", "ORD": "Chicago",
             "DFW": "Dallas", "DEN": "Denver", "SEA": "Seattle", "ATL": "Atlanta", "MIA": "Miami",
             "BOS": "Boston", "PHX": "Phoenix", "IAH": "Houston", "LAS": "Las Vegas",
             "MCO": "Orlando", "EWR": "Newark", "CLT": "Charlotte", "MSP": "Minneapolis",
             "DTW": "Detroit", "PHL": "Philadelphia", "LGA": "LaGuardia"}
Cabin = Literal["basic_economy", "economy", "business"]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def calculate(expression: str) -> str:
    """Calculate the result of a mathematical expression.

    Args:
        expression: The mathematical expression to calculate, such as '2 + 2'. The expression can contain numbers, operators (+, -, *, /), parentheses, and spaces.
    """
    if not all(c in "0123456789+-*/(). " for c in expression):
        raise ToolError("invalid characters in expression")
    return str(round(float(evaluate(expression)), 2))


def transfer_to_human_agents(summary: str) -> str:
    """Transfer the user to a human agent, with a summary of the user's issue. Only transfer if the user explicitly asks for a human agent, or if given the policy and the available tools you cannot solve the user's issue.

    Args:
        summary: A summary of the user's issue.
    """
    return "Transfer successful"


class AirlineTools:
    """The airline tools on one episode's database."""

    def __init__(self, db: OverlayDB) -> None:
        self.db = db

    def tools(self) -> list[Tool]:
        fns = [self.book_reservation, calculate, self.cancel_reservation,
               self.get_reservation_details, self.get_user_details, self.list_all_airports,
               self.search_direct_flight, self.search_onestop_flight, self.send_certificate,
               transfer_to_human_agents, self.update_reservation_baggages,
               self.update_reservation_flights, self.update_reservation_passengers,
               self.get_flight_status]
        return [Tool(f) for f in fns]

    # -- helpers ----------------------------------------------------------------------
    def _date(self, flight_number: str, date: str) -> tuple[dict[str, Any], dict[str, Any]]:
        flight = self.db.get("flights", flight_number, "flight")
        if date not in flight["dates"]:
            raise ToolError(f"flight {flight_number} not found on date {date}")
        return flight, flight["dates"][date]

    def _direct(self, date: str, origin: str | None, destination: str | None,
                leave_after: str | None = None) -> list[dict[str, Any]]:
        out = []
        for number, f in self.db.items("flights"):
            d = f["dates"].get(date)
            if (d is None or d["status"] != "available" or (origin and f["origin"] != origin)
                    or (destination and f["destination"] != destination)
                    or (leave_after and f["scheduled_departure_time_est"] < leave_after)):
                continue
            out.append({"flight_number": number, "origin": f["origin"], "destination": f["destination"],
                        "status": "available", "scheduled_departure_time_est": f["scheduled_departure_time_est"],
                        "scheduled_arrival_time_est": f["scheduled_arrival_time_est"],
                        "date": date, "available_seats": d["available_seats"], "prices": d["prices"]})
        return out

    def _pay_update(self, user_id: str, payment_id: str, amount: int | float) -> dict[str, Any] | None:
        """Charge a change to a stored card or gift card (not a certificate)."""
        method = self.db.get("users", user_id, "user")["payment_methods"].get(payment_id)
        if method is None:
            raise ToolError("payment method not found")
        if method["source"] == "certificate":
            raise ToolError("a certificate cannot be used to update a reservation")
        if method["source"] == "gift_card":
            if method["amount"] < amount:
                raise ToolError("gift card balance is not enough")
            self.db.edit("users", user_id)["payment_methods"][payment_id]["amount"] = method["amount"] - amount
        return {"payment_id": payment_id, "amount": amount} if amount != 0 else None

    # -- tools ------------------------------------------------------------------------
    def book_reservation(self, user_id: str, origin: str, destination: str,
                         flight_type: Literal["one_way", "round_trip"], cabin: Cabin,
                         flights: list[dict], passengers: list[dict], payment_methods: list[dict],
                         total_baggages: int, nonfree_baggages: int,
                         insurance: Literal["yes", "no"]) -> str:
        """Book a reservation.

        Args:
            user_id: The ID of the user to book the reservation such as 'sara_doe_496'.
            origin: The IATA code for the origin city such as 'SFO'.
            destination: The IATA code for the destination city such as 'JFK'.
            flight_type: The type of flight such as 'one_way' or 'round_trip'.
            cabin: The cabin class such as 'basic_economy', 'economy', or 'business'.
            flights: An array of objects with the flight_number (such as 'HAT001') and date ('YYYY-MM-DD') of each flight.
            passengers: An array of objects with each passenger's first_name, last_name and dob ('YYYY-MM-DD').
            payment_methods: An array of objects with payment_id and amount, such as {"payment_id": "credit_card_7815826", "amount": 120}.
            total_baggages: The total number of baggage items to book the reservation.
            nonfree_baggages: The number of non-free baggage items to book the reservation.
            insurance: Whether the reservation has insurance ('yes' or 'no').
        """
        user = self.db.get("users", user_id, "user")
        rid = next((r for r in _NEW_RESERVATION_IDS if not self.db.has("reservations", r)), None)
        if rid is None:
            raise ToolError("too many reservations")
        try:
            legs = [(str(f["flight_number"]), str(f["date"])) for f in flights]
            people = [{"first_name": str(p["first_name"]), "last_name": str(p["last_name"]), "dob": str(p["dob"])}
                      for p in passengers]
            pays = [{"payment_id": str(p["payment_id"]), "amount": p["amount"]} for p in payment_methods]
        except (KeyError, TypeError) as exc:
            raise ToolError(f"malformed flights, passengers or payment_methods: missing {exc}") from None
        total, booked = 0, []
        for number, date in legs:
            flight, d = self._date(number, date)
            if d["status"] != "available":
                raise ToolError(f"flight {number} not available on date {date}")
            if d["available_seats"][cabin] < len(people):
                raise ToolError(f"not enough seats on flight {number}")
            booked.append({"origin": flight["origin"], "destination": flight["destination"],
                           "flight_number": number, "date": date, "price": d["prices"][cabin]})
            total += d["prices"][cabin] * len(people)
        total += (30 * len(people) if insurance == "yes" else 0) + 50 * nonfree_baggages
        for p in pays:
            method = user["payment_methods"].get(p["payment_id"])
            if method is None:
                raise ToolError(f"payment method {p['payment_id']} not found")
            if method["source"] in ("gift_card", "certificate") and method["amount"] < p["amount"]:
                raise ToolError(f"not enough balance in payment method {p['payment_id']}")
        paid = sum(p["amount"] for p in pays)
        if paid != total:
            raise ToolError(f"payment amount does not add up, total price is {total}, but paid {paid}")
        editable = self.db.edit("users", user_id)
        for p in pays:
            method = editable["payment_methods"][p["payment_id"]]
            if method["source"] == "gift_card":
                method["amount"] -= p["amount"]
            elif method["source"] == "certificate":
                del editable["payment_methods"][p["payment_id"]]
        for number, date in legs:
            self.db.edit("flights", number)["dates"][date]["available_seats"][cabin] -= len(people)
        reservation = {"reservation_id": rid, "user_id": user_id, "origin": origin, "destination": destination,
                       "flight_type": flight_type, "cabin": cabin, "flights": booked, "passengers": people,
                       "payment_history": pays, "created_at": NOW, "total_baggages": total_baggages,
                       "nonfree_baggages": nonfree_baggages, "insurance": insurance}
        self.db.add("reservations", rid, reservation)
        editable["reservations"].append(rid)
        return _json(reservation)

    def cancel_reservation(self, reservation_id: str) -> str:
        """Cancel the whole reservation.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'.
        """
        r = self.db.edit("reservations", reservation_id, "reservation")
        r["payment_history"] += [{"payment_id": p["payment_id"], "amount": -p["amount"]} for p in r["payment_history"]]
        r["status"] = "cancelled"
        return _json(r)

    def get_reservation_details(self, reservation_id: str) -> str:
        """Get the details of a reservation.

        Args:
            reservation_id: The reservation ID, such as '8JX2WO'.
        """
        return _json(self.db.get("reservations", reservation_id, "reservation"))

    def get_user_details(self, user_id: str) -> str:
        """Get the details of a user, including their reservations.

        Args:
            user_id: The user ID, such as 'sara_doe_496'.
        """
        return _json(self.db.get("users", user_id, "user"))

    def list_all_airports(self) -> str:
        """Returns a list of all available airports (IATA code and city)."""
        return _json([{"iata": k, "city": v} for k, v in _AIRPORTS.items()])

    def search_direct_flight(self, origin: str, destination: str, date: str) -> str:
        """Search for direct flights between two cities on a specific date.

        Args:
            origin: The origin city airport in three letters, such as 'JFK'.
            destination: The destination city airport in three letters, such as 'LAX'.
            date: The date of the flight in the format 'YYYY-MM-DD', such as '2024-01-01'.
        """
        return _json(self._direct(date, origin, destination))

    def search_onestop_flight(self, origin: str, destination: str, date: str) -> str:
        """Search for one-stop flights between two cities on a specific date.

        Args:
            origin: The origin city airport in three letters, such as 'JFK'.
            destination: The destination city airport in three letters, such as 'LAX'.
            date: The date of the flight in the format 'YYYY-MM-DD', such as '2024-05-01'.
        """
        pairs = []
        for first in self._direct(date, origin, None):
            arrival = first["scheduled_arrival_time_est"]
            second_date = f"2024-05-{int(date[-2:]) + 1}" if "+1" in arrival else date
            for second in self._direct(second_date, first["destination"], destination, arrival):
                pairs.append([first, second])
        return _json(pairs)

    def send_certificate(self, user_id: str, amount: int) -> str:
        """Send a certificate to a user. Be careful!

        Args:
            user_id: The ID of the user to book the reservation, such as 'sara_doe_496'.
            amount: The amount of the certificate to send.
        """
        user = self.db.get("users", user_id, "user")
        for cid in _NEW_CERTIFICATE_IDS:
            if cid not in user["payment_methods"]:
                self.db.edit("users", user_id)["payment_methods"][cid] = {
                    "source": "certificate", "id": cid, "amount": amount}
                return f"Certificate {cid} added to user {user_id} with amount {amount}."
        raise ToolError("too many certificates")

    def update_reservation_baggages(self, reservation_id: str, total_baggages: int,
                                    nonfree_baggages: int, payment_id: str) -> str:
        """Update the baggage information of a reservation.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'
            total_baggages: The updated total number of baggage items included in the reservation.
            nonfree_baggages: The updated number of non-free baggage items included in the reservation.
            payment_id: The payment id stored in user profile, such as 'credit_card_7815826', 'gift_card_7815826', 'certificate_7815826'.
        """
        current = self.db.get("reservations", reservation_id, "reservation")
        price = 50 * max(0, nonfree_baggages - current["nonfree_baggages"])
        payment = self._pay_update(current["user_id"], payment_id, price)
        r = self.db.edit("reservations", reservation_id)
        if payment is not None:
            r["payment_history"].append(payment)
        r["total_baggages"], r["nonfree_baggages"] = total_baggages, nonfree_baggages
        return _json(r)

    def update_reservation_flights(self, reservation_id: str, cabin: Cabin, flights: list[dict],
                                   payment_id: str) -> str:
        """Update the flight information of a reservation.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'.
            cabin: The cabin class of the reservation
            flights: An array of objects with flight_number and date of each flight in the ENTIRE new reservation. Even if a flight segment is not changed, it should still be included in the array.
            payment_id: The payment id stored in user profile, such as 'credit_card_7815826', 'gift_card_7815826', 'certificate_7815826'.
        """
        current = self.db.get("reservations", reservation_id, "reservation")
        n = len(current["passengers"])
        total, legs = 0, []
        for f in flights:
            try:
                number, date = str(f["flight_number"]), str(f["date"])
            except (KeyError, TypeError) as exc:
                raise ToolError(f"malformed flights: missing {exc}") from None
            kept = next((x for x in current["flights"] if x["flight_number"] == number
                         and x["date"] == date and cabin == current["cabin"]), None)
            if kept is not None:
                legs.append(kept)
                total += kept["price"] * n
                continue
            flight, d = self._date(number, date)
            if d["status"] != "available":
                raise ToolError(f"flight {number} not available on date {date}")
            if d["available_seats"][cabin] < n:
                raise ToolError(f"not enough seats on flight {number}")
            legs.append({"flight_number": number, "date": date, "price": d["prices"][cabin],
                         "origin": flight["origin"], "destination": flight["destination"]})
            total += d["prices"][cabin] * n
        total -= sum(x["price"] for x in current["flights"]) * n
        payment = self._pay_update(current["user_id"], payment_id, total)
        r = self.db.edit("reservations", reservation_id)
        if payment is not None:
            r["payment_history"].append(payment)
        r["flights"], r["cabin"] = legs, cabin
        return _json(r)

    def update_reservation_passengers(self, reservation_id: str, passengers: list[dict]) -> str:
        """Update the passenger information of a reservation.

        Args:
            reservation_id: The reservation ID, such as 'ZFA04Y'.
            passengers: An array of objects with each passenger's first_name, last_name and dob.
        """
        current = self.db.get("reservations", reservation_id, "reservation")
        if len(passengers) != len(current["passengers"]):
            raise ToolError("number of passengers does not match")
        try:
            people = [{"first_name": str(p["first_name"]), "last_name": str(p["last_name"]), "dob": str(p["dob"])}
                      for p in passengers]
        except (KeyError, TypeError) as exc:
            raise ToolError(f"malformed passengers: missing {exc}") from None
        r = self.db.edit("reservations", reservation_id)
        r["passengers"] = people
        return _json(r)

    def get_flight_status(self, flight_number: str, date: str) -> str:
        """Get the status of a flight.

        Args:
            flight_number: The flight number.
            date: The date of the flight.
        """
        return self._date(flight_number, date)[1]["status"]
