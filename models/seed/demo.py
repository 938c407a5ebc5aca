"""Demo data for `flask --app api seed-demo`: cities, campaigns, staff, masters, requests and cash.

What a run does:
- reference rows (cities, directions, the lookups the migration seeds, campaigns, users) are
  get-or-create by their natural key (name, city + campaign name, login case-insensitively), so a
  second run adds none of them again;
- requests and transactions are added only while no request or transaction created by a demo user
  exists; once they do, a run skips both and reports 0 for them (run it on a fresh database, or
  delete the demo requests, to get a new set);
- the demo users a run creates all sign in with the password it is given: `seed-demo` draws a random
  one (`new_demo_password`) and prints it once; users that already exist keep theirs. No password
  is written in the source, and `seed-demo` refuses to run in production.

The data is deterministic for a given `random_seed`; each part draws from its own generator so a
part that already exists does not shift the others.
"""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from models.cash.tables import Transaction
from models.core.db import Session
from models.core.enums import (
    ADMIN,
    AVITOLOG,
    CALLCENTR,
    DIRECTOR,
    MANAGER,
    MASTER,
    REQUEST_STATUSES,
    REQUEST_TYPE_FIRST,
    REQUEST_TYPE_REPEAT,
    ROLES,
    STATUS_DONE,
    STATUSES_ALLOWED_TO_SIGN_IN,
    TRANSACTION_TYPE_EXPENSE,
    TRANSACTION_TYPE_INCOME,
)
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType, Role, TransactionType
from models.people.passwords import hash_password
from models.people.tables import User
from models.requests.money import CENT, request_money
from models.requests.tables import Request
from settings import settings

DAYS_BACK = 60  # requests and cash entries fall within this many days before now
OLDEST = DAYS_BACK - 1  # in whole local days
REPEAT_CLIENT_SHARE = 0.12


# ---- what the demo business looks like ------------------------------------------------------------

@dataclass(frozen=True)
class CitySpec:
    name: str
    slug: str  # used in logins
    area_code: str
    weight: int  # share of the requests
    campaign_count: int
    streets: tuple[str, ...]


CITIES = (
    CitySpec("Москва", "msk", "495", 34, 3, (
        "ул. Профсоюзная", "Ленинский пр-т", "ул. Бутлерова", "Варшавское ш.", "ул. Маршала Жукова",
        "ул. Новаторов",
    )),
    CitySpec("Санкт-Петербург", "spb", "812", 24, 3, (
        "Невский пр-т", "ул. Марата", "Московский пр-т", "ул. Савушкина", "пр-т Просвещения",
    )),
    CitySpec("Казань", "kzn", "843", 15, 2, (
        "ул. Баумана", "пр-т Победы", "ул. Чистопольская", "ул. Декабристов", "ул. Ямашева",
    )),
    CitySpec("Екатеринбург", "ekb", "343", 14, 2, (
        "ул. Малышева", "ул. 8 Марта", "ул. Вайнера", "ул. Куйбышева", "ул. Белинского",
    )),
    CitySpec("Новосибирск", "nsk", "383", 13, 2, (
        "Красный пр-т", "ул. Ленина", "ул. Кирова", "ул. Гоголя", "ул. Титова",
    )),
)

# Tracking lines: the same local number in each city, distinct by area code.
CAMPAIGN_LINES = (("Яндекс Директ", "215-40-17"), ("Авито", "380-12-54"), ("2ГИС", "644-73-09"))
AVITO = "Авито"

# direction -> (what clients report, what masters wrote after the job)
DIRECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Бытовая техника": (
        ("Стиральная машина не сливает воду", "Холодильник не морозит", "Посудомоечная машина не греет воду",
         "Духовой шкаф не включается", "Стиральная машина сильно шумит при отжиме",
         "Варочная панель выдаёт ошибку и отключается"),
        ("Заменён сливной насос, проверена работа", "Заменены подшипники барабана", "Заменён ТЭН",
         "Заправка фреоном, замена фильтра-осушителя", "Замена модуля управления"),
    ),
    "Компьютеры": (
        ("Ноутбук не включается", "Компьютер шумит и перегревается", "Не загружается Windows",
         "Разбит экран ноутбука", "Нужно настроить роутер и Wi-Fi"),
        ("Чистка от пыли, замена термопасты", "Переустановка системы, перенос данных",
         "Заменена матрица", "Заменён блок питания", "Настроен роутер, подключены устройства"),
    ),
    "Кондиционеры": (
        ("Кондиционер не охлаждает", "Течёт вода из внутреннего блока", "Нужна чистка и заправка кондиционера",
         "Установка сплит-системы", "Кондиционер выдаёт ошибку и отключается"),
        ("Чистка и дозаправка фреоном", "Прочищен дренаж", "Установлена сплит-система",
         "Заменён датчик температуры", "Устранена утечка фреона"),
    ),
    "Сантехника": (
        ("Течёт смеситель на кухне", "Засор в ванной", "Нужно заменить унитаз", "Подтекает бойлер",
         "Подключить стиральную машину к воде"),
        ("Заменён смеситель", "Прочищен засор", "Установлен новый унитаз", "Заменён клапан бойлера",
         "Подключена стиральная машина"),
    ),
}

MALE_FIRST = ("Александр", "Алексей", "Андрей", "Дмитрий", "Евгений", "Иван", "Игорь", "Максим", "Михаил",
              "Николай", "Олег", "Павел", "Роман", "Сергей", "Юрий", "Владимир", "Виктор", "Константин")
FEMALE_FIRST = ("Анна", "Елена", "Ирина", "Мария", "Наталья", "Ольга", "Светлана", "Татьяна", "Юлия",
                "Екатерина", "Людмила", "Галина", "Ксения", "Валентина")
PATRONYMICS = (  # (male, female)
    ("Александрович", "Александровна"), ("Алексеевич", "Алексеевна"), ("Андреевич", "Андреевна"),
    ("Викторович", "Викторовна"), ("Владимирович", "Владимировна"), ("Дмитриевич", "Дмитриевна"),
    ("Иванович", "Ивановна"), ("Игоревич", "Игоревна"), ("Михайлович", "Михайловна"),
    ("Николаевич", "Николаевна"), ("Олегович", "Олеговна"), ("Петрович", "Петровна"),
    ("Сергеевич", "Сергеевна"), ("Юрьевич", "Юрьевна"),
)
SURNAMES = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков",
            "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
            "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Борисов",
            "Яковлев", "Григорьев", "Романов", "Воробьёв", "Кузьмин", "Фролов", "Гусев", "Ильин", "Сорокин",
            "Белов", "Медведев", "Антонов", "Тарасов", "Жуков", "Комаров", "Давыдов", "Калинин", "Галкин")
MOBILE_CODES = ("903", "905", "909", "915", "916", "917", "925", "926", "929", "950", "951", "960", "961",
                "977", "985", "999")


@dataclass(frozen=True)
class StatusProfile:
    weight: int  # relative frequency
    age_days: tuple[int, int]  # how many days ago such requests were created
    dispatched: bool  # a master of the city is assigned
    with_meeting: bool  # an appointment is set
    meeting_passed: bool = False  # the appointment is not in the future


# Call-centre outcomes (Новая, Перезвонить, ТНО, Отказ) have no master; from Ожидает принятия on
# a master is assigned; finished jobs are a few days old so their visit and completion are past.
STATUS_PROFILES = {
    "Новая": StatusProfile(8, (0, 2), False, False),
    "Ожидает": StatusProfile(7, (0, 5), False, True),
    "Ожидает принятия": StatusProfile(5, (0, 3), True, True),
    "Принял": StatusProfile(4, (0, 3), True, True),
    "В пути": StatusProfile(3, (0, 2), True, True, meeting_passed=True),
    "В работе": StatusProfile(6, (0, 4), True, True, meeting_passed=True),
    "Готово": StatusProfile(34, (4, OLDEST), True, True, meeting_passed=True),
    "Отказ": StatusProfile(9, (0, OLDEST), False, False),
    "Модерн": StatusProfile(4, (4, 45), True, True, meeting_passed=True),
    "НеЗаказ": StatusProfile(7, (4, OLDEST), True, True, meeting_passed=True),
    "Перезвонить": StatusProfile(6, (0, 6), False, False),
    "ТНО": StatusProfile(7, (0, OLDEST), False, False),
}
assert set(STATUS_PROFILES) == set(REQUEST_STATUSES)

MASTER_NOTES = {
    "Модерн": ("Нужна запчасть, заказана; повторный выезд после поставки", "Клиент думает, созвониться через неделю"),
    "НеЗаказ": ("Клиент отказался от ремонта после диагностики", "Ремонт нецелесообразен, дана консультация"),
}
CALL_CENTER_NOTES = {
    "Перезвонить": ("Просит перезвонить вечером", "Уточнит удобное время и перезвонит", "Перезвонить после 18:00"),
    "Отказ": ("Дорого, отказался", "Уже вызвали другого мастера", "Передумал, справится сам"),
    "Ожидает": ("Код домофона 45, этаж 3", "Позвонить за час до приезда", "Клиент будет после 14:00"),
}

# payment reason, amount range in roubles, note; small everyday expenses come up more often
EXPENSES = (
    ("Аренда офиса", (10000, 30000), "Аренда офиса за месяц"),
    ("Реклама", (3000, 20000), "Пополнение рекламного кабинета"),
    ("Запчасти", (800, 12000), "Закупка запчастей на склад"),
    ("Топливо", (500, 3000), "Компенсация бензина мастерам"),
    ("Связь", (1000, 4000), "Оплата телефонии Mango Office"),
    ("Канцтовары", (300, 2000), "Бланки БСО и канцелярия"),
    ("Инструмент", (1500, 12000), "Покупка инструмента"),
    ("Зарплата", (10000, 25000), "Выплата диспетчеру"),
)
EXPENSE_WEIGHTS = (1, 2, 4, 4, 2, 2, 2, 1)
MANUAL_INCOMES = (
    ("Внесение наличных", (5000, 30000), "Внесение наличных директором в кассу"),
    ("Возврат от поставщика", (1000, 8000), "Возврат за бракованную запчасть"),
    ("Безналичная оплата", (8000, 30000), "Оплата от юрлица за обслуживание кондиционеров"),
)


@dataclass(frozen=True)
class UserSpec:
    login: str
    role: str
    city: str | None  # city name
    status: str = "active"
    female: bool = False


def user_specs() -> list[UserSpec]:
    specs = [
        UserSpec("demo_admin", ADMIN, None),
        UserSpec("demo_manager", MANAGER, None, female=True),
        UserSpec("demo_director", DIRECTOR, None),  # every city
        UserSpec("demo_callcentr_1", CALLCENTR, None, female=True),
        UserSpec("demo_callcentr_2", CALLCENTR, None, female=True),
        UserSpec("demo_avitolog", AVITOLOG, None),
    ]
    for city in CITIES:
        specs.append(UserSpec(f"demo_director_{city.slug}", DIRECTOR, city.name, female=city.slug == "kzn"))
        for number in (1, 2, 3):
            status = {("msk", 3): "busy", ("spb", 3): "inactive"}.get((city.slug, number), "active")
            specs.append(UserSpec(f"demo_master_{city.slug}_{number}", MASTER, city.name, status))
    return specs


# ---- small generators -----------------------------------------------------------------------------

def _rng(random_seed: int, part: str) -> random.Random:
    return random.Random(f"{random_seed}:{part}")


def _business_tz() -> ZoneInfo:
    return ZoneInfo(settings.BUSINESS_TZ)


def _local_date(moment: datetime) -> date:
    return moment.astimezone(_business_tz()).date()


def _at_local(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=_business_tz()).astimezone(timezone.utc)


def _person(rng: random.Random, female: bool) -> tuple[str, str, str]:
    """(surname, first name, patronymic) in the right gender."""
    surname = rng.choice(SURNAMES)
    male_patronymic, female_patronymic = rng.choice(PATRONYMICS)
    if female:
        return surname + "а", rng.choice(FEMALE_FIRST), female_patronymic
    return surname, rng.choice(MALE_FIRST), male_patronymic


def _full_name(rng: random.Random, female: bool) -> str:
    return " ".join(_person(rng, female))


def _client_name(rng: random.Random) -> str:
    surname, first, patronymic = _person(rng, female=rng.random() < 0.5)
    return rng.choice((f"{surname} {first} {patronymic}", f"{first} {patronymic}", first, f"{first} {surname}"))


def _mobile_digits(rng: random.Random) -> str:
    """Ten digits of a Russian mobile number, without the country code."""
    return rng.choice(MOBILE_CODES) + f"{rng.randrange(10 ** 7):07d}"


def _typed_phone(rng: random.Random, ten: str) -> str:
    """A mobile number the way people type it."""
    code, a, b, c = ten[:3], ten[3:6], ten[6:8], ten[8:]
    return rng.choice((
        f"+7 ({code}) {a}-{b}-{c}",
        f"8 {code} {a} {b} {c}",
        f"8{ten}",
        f"+7{ten}",
        f"8({code}){a}-{b}-{c}",
        f"{code} {a}-{b}-{c}",
    ))


def _address(rng: random.Random, city: CitySpec) -> str:
    street = rng.choice(city.streets)
    house = rng.randint(1, 120)
    if rng.random() < 0.15:
        return f"г. {city.name}, {street}, д. {house}"  # a private house
    building = f", корп. {rng.randint(1, 4)}" if rng.random() < 0.2 else ""
    return f"г. {city.name}, {street}, д. {house}{building}, кв. {rng.randint(1, 280)}"


def _roubles(rng: random.Random, bounds: tuple[int, int]) -> Decimal:
    return Decimal(rng.randrange(bounds[0], bounds[1] + 1, 10)).quantize(CENT)


# ---- reference data: get or create --------------------------------------------------------------

def _get_or_create_named(model, names, created: dict[str, int]) -> dict[str, object]:
    """Rows of a lookup table by name, creating the missing ones."""
    rows = {row.name: row for row in Session.scalars(select(model).where(model.name.in_(names)))}
    missing = [model(name=name) for name in names if name not in rows]
    Session.add_all(missing)
    rows.update({row.name: row for row in missing})
    created[model.__tablename__] = created.get(model.__tablename__, 0) + len(missing)
    return rows


def _ensure_campaigns(cities: dict[str, City], created: dict[str, int]) -> dict[str, list[AdvertisingCampaign]]:
    """2–3 campaigns per city, each on its own tracking line; an active line is never reused."""
    wanted = []
    for city in CITIES:
        for source, local_number in CAMPAIGN_LINES[:city.campaign_count]:
            phone_number = f"+7 ({city.area_code}) {local_number}"
            wanted.append((cities[city.name], f"{source} — {city.name}", phone_number, normalize_phone(phone_number)))
    names = [name for _city, name, _typed, _phone in wanted]
    phones = [phone for _city, _name, _typed, phone in wanted]
    existing = Session.scalars(select(AdvertisingCampaign).where(
        or_(AdvertisingCampaign.name.in_(names),
            AdvertisingCampaign.phone.in_(phones) & AdvertisingCampaign.is_active)
    )).all()
    by_name = {(row.city_id, row.name): row for row in existing}
    active_phones = {row.phone for row in existing if row.is_active}
    result: dict[str, list[AdvertisingCampaign]] = {city.name: [] for city in CITIES}
    new = []
    for city, name, phone_number, phone in wanted:
        campaign = by_name.get((city.id, name))
        if campaign is None:
            if phone in active_phones:
                continue  # the line already belongs to another campaign
            campaign = AdvertisingCampaign(city=city, name=name, phone_number=phone_number, phone=phone,
                                           is_active=True)
            new.append(campaign)
            active_phones.add(phone)
        result[city.name].append(campaign)
    Session.add_all(new)
    created[AdvertisingCampaign.__tablename__] = len(new)
    return result


def new_demo_password() -> str:
    """A fresh random password for the demo users of one run (16 URL-safe characters)."""
    return secrets.token_urlsafe(12)


def _ensure_users(rng: random.Random, roles: dict[str, Role], cities: dict[str, City], password: str,
                  created: dict[str, int]) -> dict[str, User]:
    specs = user_specs()
    existing = Session.scalars(
        select(User).where(func.lower(User.login).in_([spec.login.lower() for spec in specs]))
    ).unique().all()
    users = {user.login.lower(): user for user in existing}
    password_hash = None  # hashed once, only when a user is missing
    new = []
    for spec in specs:
        if spec.login.lower() in users:
            continue
        if password_hash is None:
            password_hash = hash_password(password)
        ten = _mobile_digits(rng)
        phone_number = f"+7 ({ten[:3]}) {ten[3:6]}-{ten[6:8]}-{ten[8:]}"
        is_master = spec.role == MASTER
        user = User(
            login=spec.login,
            password_hash=password_hash,
            role=roles[spec.role],
            status=spec.status,
            city=cities[spec.city] if spec.city else None,
            full_name=_full_name(rng, spec.female),
            phone_number=phone_number,
            phone=normalize_phone(phone_number),
            birth_date=date(rng.randint(1968, 2001), rng.randint(1, 12), rng.randint(1, 28)),
            notes="Демо-мастер" if is_master else "Демо-сотрудник",
        )
        if is_master:
            user.passport = f"{rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(100000, 999999)}"
        new.append(user)
        users[spec.login.lower()] = user
    Session.add_all(new)
    created[User.__tablename__] = len(new)
    return users


# ---- requests and cash ----------------------------------------------------------------------------

@dataclass
class _Client:
    ten: str  # phone digits without the country code
    name: str
    address: str


@dataclass
class _Context:
    """Everything a generated request or transaction refers to."""

    now: datetime
    cities: dict[str, City]
    campaigns: dict[str, list[AdvertisingCampaign]]
    directions: list[Direction]
    request_types: dict[str, RequestType]
    transaction_types: dict[str, TransactionType]
    masters: dict[str, list[User]]  # per city, those who may work
    operators: list[User]
    avitolog: User
    directors: dict[str, User]  # per city
    manager: User


def _statuses(rng: random.Random, count: int) -> list[str]:
    """`count` statuses with a plausible spread; every status once when there is room."""
    statuses = list(REQUEST_STATUSES) if count >= len(REQUEST_STATUSES) else []
    weights = [STATUS_PROFILES[status].weight for status in REQUEST_STATUSES]
    statuses += rng.choices(REQUEST_STATUSES, weights=weights, k=count - len(statuses))
    rng.shuffle(statuses)
    return statuses


def _created_at(rng: random.Random, age_days: tuple[int, int], now: datetime) -> datetime:
    """A moment in business hours (local 8:00–22:00) `age_days` ago, never in the future."""
    day = _local_date(now) - timedelta(days=rng.randint(*age_days))
    moment = _at_local(day, rng.randint(8, 21), rng.randint(0, 59))
    if moment > now:
        moment = now - timedelta(minutes=rng.randint(5, 180))
    return moment


def _meeting_after(rng: random.Random, created_at: datetime, not_after: datetime | None) -> datetime:
    """An appointment on the hour or half hour, in local working hours, 2–72 hours after the call."""
    local = (created_at + timedelta(hours=rng.randint(2, 72))).astimezone(_business_tz())
    if local.hour < 9:
        local = local.replace(hour=9, minute=0)
    elif local.hour >= 20:
        local = (local + timedelta(days=1)).replace(hour=10, minute=0)
    meeting = local.replace(minute=local.minute // 30 * 30, second=0, microsecond=0).astimezone(timezone.utc)
    if not_after is not None and meeting > not_after:
        meeting = (created_at + (not_after - created_at) * rng.uniform(0.3, 0.9)).replace(second=0, microsecond=0)
    return meeting


def _requests(rng: random.Random, count: int, ctx: _Context) -> list[Request]:
    city_specs = {city.name: city for city in CITIES}
    city_names = [city.name for city in CITIES]
    city_weights = [city.weight for city in CITIES]
    # Chronological order, so a repeat client always comes after their first request.
    plan = []
    for status in _statuses(rng, count):
        profile = STATUS_PROFILES[status]
        plan.append((_created_at(rng, profile.age_days, ctx.now), status))
    plan.sort()

    clients: dict[str, list[_Client]] = {name: [] for name in city_names}
    used_phones: set[str] = set()
    requests = []
    for created_at, status in plan:
        city_name = rng.choices(city_names, weights=city_weights)[0]
        known = clients[city_name]
        if known and rng.random() < REPEAT_CLIENT_SHARE:
            client, request_type = rng.choice(known), REQUEST_TYPE_REPEAT
        else:
            ten = _mobile_digits(rng)
            while ten in used_phones:
                ten = _mobile_digits(rng)
            used_phones.add(ten)
            client = _Client(ten, _client_name(rng), _address(rng, city_specs[city_name]))
            known.append(client)
            request_type = REQUEST_TYPE_FIRST
        requests.append(_request(rng, ctx, city_name, client, request_type, status, created_at))
    return requests


def _request(rng: random.Random, ctx: _Context, city_name: str, client: _Client, request_type: str,
             status: str, created_at: datetime) -> Request:
    profile = STATUS_PROFILES[status]
    campaigns = [campaign for campaign in ctx.campaigns[city_name] if campaign.is_active]
    campaign = rng.choice(campaigns) if campaigns and rng.random() < 0.95 else None
    from_avito = campaign is not None and campaign.name.startswith(AVITO)
    creator = ctx.avitolog if from_avito else rng.choice(ctx.operators)
    direction = rng.choice(ctx.directions)
    problems, works = DIRECTIONS[direction.name]
    phone_raw = _typed_phone(rng, client.ten)

    request = Request(
        city=ctx.cities[city_name],
        advertising_campaign=campaign,
        request_type=ctx.request_types[request_type],
        client_phone=normalize_phone(phone_raw),
        client_phone_raw=phone_raw,
        client_name=client.name,
        address=client.address,
        direction=direction,
        problem=rng.choice(problems),
        status=status,
        ats_number=campaign.phone if campaign is not None else None,
        call_center_name=creator.full_name,
        avito_chat_id=f"u2i-{rng.getrandbits(48):012x}" if from_avito else None,
        created_by=creator,
        created_at=created_at,
        updated_at=created_at + timedelta(minutes=rng.randint(2, 40)),
    )
    if status in CALL_CENTER_NOTES and rng.random() < 0.6:
        request.call_center_notes = rng.choice(CALL_CENTER_NOTES[status])
    if profile.with_meeting:
        request.meeting_date = _meeting_after(rng, created_at, ctx.now if profile.meeting_passed else None)
    if profile.dispatched:
        request.master = rng.choice(ctx.masters[city_name])
        if status in MASTER_NOTES:
            request.master_notes = rng.choice(MASTER_NOTES[status])
    if status == STATUS_DONE:
        _complete(rng, request, rng.choice(works), ctx.now)
    request.updated_at = min(request.updated_at, ctx.now)
    return request


def _complete(rng: random.Random, request: Request, work: str, now: datetime) -> None:
    """Money of a finished job: result, the master's expenses, net and the part handed over."""
    result = Decimal(rng.randrange(1500, 25001, 100))
    expenses = Decimal(0) if rng.random() < 0.35 else Decimal(int(result) * rng.randint(1, 30) // 1000 * 10)
    request.result, request.expenses = result.quantize(CENT), expenses.quantize(CENT)
    request.net_amount, request.master_handover = request_money(request.result, request.expenses)
    request.master_notes = work
    request.completed_at = min(now, request.meeting_date + timedelta(minutes=rng.randint(40, 180)))
    request.updated_at = request.completed_at


def _income_of(request: Request, ctx: _Context) -> Transaction:
    """The cash income a Готово request books: the amount the master hands over, on the day it was done."""
    return Transaction(
        city=request.city,
        transaction_type=ctx.transaction_types[TRANSACTION_TYPE_INCOME],
        amount=request.master_handover,
        specified_date=_local_date(request.completed_at),
        notes=f"Приход по заявке {request.id}",
        payment_reason="Сдача денег мастером",
        request=request,
        created_by_id=request.master.id,
        created_at=request.completed_at,
        updated_at=request.completed_at,
    )


def _cash_entry(rng: random.Random, ctx: _Context, city_name: str, kind: str,
                entry: tuple[str, tuple[int, int], str]) -> Transaction:
    reason, bounds, note = entry
    day = _local_date(ctx.now) - timedelta(days=rng.randint(0, OLDEST))
    created_at = min(ctx.now, _at_local(day, rng.randint(9, 19), rng.randint(0, 59)))
    amount = _roubles(rng, bounds)
    director = ctx.directors.get(city_name, ctx.manager)
    return Transaction(
        city=ctx.cities[city_name],
        transaction_type=ctx.transaction_types[kind],
        amount=-amount if kind == TRANSACTION_TYPE_EXPENSE else amount,
        specified_date=day,
        payment_reason=reason,
        notes=note,
        created_by_id=director.id,
        created_at=created_at,
        updated_at=created_at,
    )


def _cash_book(rng: random.Random, ctx: _Context) -> list[Transaction]:
    """About ten expenses and one or two manual incomes per city over the last DAYS_BACK days."""
    entries = []
    for city in CITIES:
        for _ in range(rng.randint(8, 12)):
            expense = rng.choices(EXPENSES, weights=EXPENSE_WEIGHTS)[0]
            entries.append(_cash_entry(rng, ctx, city.name, TRANSACTION_TYPE_EXPENSE, expense))
        for _ in range(rng.randint(1, 2)):
            entries.append(_cash_entry(rng, ctx, city.name, TRANSACTION_TYPE_INCOME, rng.choice(MANUAL_INCOMES)))
    return entries


def _has_demo_activity(demo_user_ids: list[int]) -> bool:
    requests = select(Request.id).where(Request.created_by_id.in_(demo_user_ids))
    transactions = select(Transaction.id).where(Transaction.created_by_id.in_(demo_user_ids))
    return Session.scalar(select(requests.exists())) or Session.scalar(select(transactions.exists()))


def _context(cities, campaigns, directions, request_types, transaction_types, users) -> _Context:
    by_login = {spec.login: users[spec.login.lower()] for spec in user_specs()}
    masters: dict[str, list[User]] = {}
    for city in CITIES:
        city_masters = [user for user in by_login.values()
                        if user.role.name == MASTER and user.city_id == cities[city.name].id]
        working = [user for user in city_masters if user.status in STATUSES_ALLOWED_TO_SIGN_IN]
        masters[city.name] = working or city_masters
    return _Context(
        now=datetime.now(timezone.utc),
        cities=cities,
        campaigns=campaigns,
        directions=[directions[name] for name in DIRECTIONS],
        request_types=request_types,
        transaction_types=transaction_types,
        masters=masters,
        operators=[by_login["demo_callcentr_1"], by_login["demo_callcentr_2"]],
        avitolog=by_login["demo_avitolog"],
        directors={city.name: by_login[f"demo_director_{city.slug}"] for city in CITIES},
        manager=by_login["demo_manager"],
    )


# ---- entry point ----------------------------------------------------------------------------------

def seed(request_count: int = 400, random_seed: int = 0, *, password: str) -> dict[str, int]:
    """Fill the database with demo data; returns how many rows each table received. The demo users
    created now sign in with `password`."""
    created: dict[str, int] = {}
    try:
        cities = _get_or_create_named(City, [city.name for city in CITIES], created)
        directions = _get_or_create_named(Direction, list(DIRECTIONS), created)
        roles = _get_or_create_named(Role, list(ROLES), created)
        request_types = _get_or_create_named(RequestType, [REQUEST_TYPE_FIRST, REQUEST_TYPE_REPEAT], created)
        transaction_types = _get_or_create_named(
            TransactionType, [TRANSACTION_TYPE_INCOME, TRANSACTION_TYPE_EXPENSE], created
        )
        Session.flush()
        campaigns = _ensure_campaigns(cities, created)
        users = _ensure_users(_rng(random_seed, "users"), roles, cities, password, created)
        Session.flush()

        created[Request.__tablename__] = created[Transaction.__tablename__] = 0
        if not _has_demo_activity([user.id for user in users.values()]):
            ctx = _context(cities, campaigns, directions, request_types, transaction_types, users)
            requests = _requests(_rng(random_seed, "requests"), request_count, ctx)
            Session.add_all(requests)
            Session.flush()  # the incomes name their request's id
            transactions = [_income_of(request, ctx) for request in requests if request.status == STATUS_DONE]
            transactions += _cash_book(_rng(random_seed, "cash"), ctx)
            Session.add_all(transactions)
            created[Request.__tablename__] = len(requests)
            created[Transaction.__tablename__] = len(transactions)
        Session.commit()
    except BaseException:
        Session.rollback()
        raise
    return created
