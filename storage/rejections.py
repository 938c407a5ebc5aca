"""Why a file is refused: a stable code for programs and a sentence in Russian for people."""
from __future__ import annotations

REASONS: dict[str, str] = {
    # the name
    "name_missing": "Имя файла не указано",
    "name_too_long": "Имя файла слишком длинное (не более 255 символов)",
    "name_path": "Имя файла не должно содержать путь («/», «\\», «..») или начинаться с точки",
    "name_control": "Имя файла содержит управляющие символы",
    "name_unicode": "Имя файла содержит невидимые символы, символы смены направления текста или маскирующие знаки",
    "name_chars": "Имя файла содержит недопустимые символы (< > : \" | ? *)",
    "name_trailing": "Имя файла не должно оканчиваться точкой или пробелом",
    "name_double_extension": "Имя файла содержит второе, опасное расширение",
    "name_no_extension": "У файла нет расширения",
    # size and type
    "empty": "Файл пустой",
    "too_large": "Файл слишком большой",
    "extension": "Недопустимый тип файла",
    "executable": "Исполняемые файлы запрещены",
    "script": "Файл содержит скрипт или HTML-разметку",
    "mismatch": "Содержимое файла не соответствует его расширению",
    "polyglot": "Файл содержит внутри данные другого формата (файл-полиглот)",
    "trailing_data": "Файл содержит лишние данные после конца изображения",
    # images
    "image_too_large": "Изображение слишком большое по размерам (возможна «бомба декомпрессии»)",
    "image_corrupt": "Изображение повреждено или не читается",
    # PDF
    "pdf_active": "PDF содержит JavaScript, запуск программ, формы или вложенные файлы",
    "pdf_encrypted": "PDF защищён паролем",
    "pdf_corrupt": "PDF повреждён или не читается",
    # office
    "office_macros": "Документ содержит макросы, встроенные объекты или внешние шаблоны",
    "zip_bomb": "Документ подозрительно сильно сжат (zip-бомба)",
    "office_corrupt": "Документ Word повреждён или не читается",
    "rtf": "Документы RTF не принимаются: сохраните файл как DOCX или PDF",
    # audio
    "audio_corrupt": "Аудиофайл повреждён или не читается",
    "audio_duration": "Не удалось определить длительность записи или она недопустима",
    # the pipeline itself
    "timeout": "Проверка файла не уложилась в отведённое время",
    "check_failed": "Файл не удалось проверить: он повреждён или имеет необычную структуру",
    "missing": "Загруженный файл не найден, загрузите его снова",
    "expired": "Файл не был проверен вовремя, загрузите его снова",
}


class Rejected(Exception):
    """The file is refused. `detail` adds specifics to the standard sentence of `code`."""

    def __init__(self, code: str, detail: str | None = None):
        self.code = code
        self.message = REASONS[code] + (f": {detail}" if detail else "")
        super().__init__(self.message)
