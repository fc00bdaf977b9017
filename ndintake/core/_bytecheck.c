/* A one-pass accept check over JSON bytes: the C half of ndintake.core.bytecheck.
 *
 * A Program is a table of nodes compiled in Python from a JSON Schema
 * (bytecheck.py). check(line) scans one envelope line {"<key>": {...}} and
 * returns the key when the value under it is valid for that key's node, else
 * None. It builds no Python objects (except a str for the rare string with a
 * pattern or an enum) and never raises for bad input: anything it does not
 * take goes to the slow path, which decides and words every refusal. So it
 * only ever accepts: it is stricter than the schema wherever that is simpler
 * (escaped keys, duplicate keys, integers of more than 18 digits, nesting
 * deeper than MAX_DEPTH), and it refuses everything orjson refuses (invalid
 * UTF-8, lone surrogates, numbers that overflow a double, trailing bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Node types, and the JSON types of an anyOf/if branch (bytecheck.py has the same values). */
#define T_NULL 1
#define T_BOOL 2
#define T_INT 4     /* an integer token */
#define T_FLOAT 8   /* a number token with a fraction or an exponent ("number" is T_INT | T_FLOAT) */
#define T_STR 16
#define T_ARR 32
#define T_STRUCT 64 /* an object with named properties */
#define T_MAP 128   /* an object of any keys (one pattern at most), all values of one node */
#define T_ANY 256   /* any JSON value */
#define T_OBJ 512   /* in a branch: an object (a set struct, or a map) */

#define MAX_DEPTH 64
#define MAX_PROPS 128
#define MAX_DIGITS 18 /* integers with more digits are refused: they may not fit 64 bits */

/* What a struct's field turned out to be: for its "set" and branch rules. */
enum { C_ABSENT = 0, C_NULL, C_BOOL, C_INT, C_FLOAT, C_STR, C_LIST0, C_LIST, C_MAP0, C_MAP, C_STRUCT0, C_STRUCT };

typedef struct {
    const char *key;
    Py_ssize_t len;
    int node;
    int required;
} Prop;

typedef struct {
    int field;
    unsigned types;
} Branch;

typedef struct {
    int if_then; /* 0: at least one branch holds (anyOf); 1: not branch 0, or branch 1 */
    int count;
    Branch *branches;
} Rule;

typedef struct {
    unsigned types;
    /* strings */
    Py_ssize_t min_len, max_len; /* code points; max -1: none */
    PyObject *pattern;           /* a character class (bytes), a callable (re.Pattern.search), or NULL */
    PyObject *enum_values;       /* a frozenset of str, or NULL */
    /* numbers */
    int has_min, has_max;
    double minimum, maximum;
    long long int_min, int_max;
    /* arrays */
    int items;
    Py_ssize_t min_items, max_items;
    /* structs */
    int nprops;
    Prop *props;
    short *slots; /* open addressing over the props: a prop's index, or -1 */
    unsigned mask;
    int nrules;
    Rule *rules;
    int must_be_set;
    int unknown; /* node of an unknown key's value, -1: unknown keys refused */
    /* maps */
    PyObject *key_pattern;
    int map_item;
    Py_ssize_t min_props, max_props;
} Node;

typedef struct {
    PyObject_HEAD
    Node *nodes;
    int nnodes;
    int nkeys;
    Prop *keys;          /* the envelope's keys and their nodes */
    PyObject **key_objs; /* the str returned for each */
    int whole;           /* the line is the value (of the first key's node that takes it), not an envelope */
    PyObject *refs;      /* keeps the key bytes and callables alive */
} Checker;

typedef struct {
    const unsigned char *p, *end;
    int depth;
    Checker *c;
    int error; /* a Python exception is set (from a pattern call) */
} Scan;

/* -- scanning -------------------------------------------------------------- */

/* JSON whitespace; PLAIN: bytes that stand for themselves in a string (printable
 * ASCII but the quote and the backslash). A bytes object ends with a NUL, in
 * neither table, so loops over them stop at its end without a bounds check. */
static unsigned char WS[256], PLAIN[256];

static void init_tables(void) {
    WS[' '] = WS['\t'] = WS['\r'] = WS['\n'] = 1;
    for (int ch = 0x20; ch < 0x80; ch++) PLAIN[ch] = ch != '"' && ch != '\\';
}

static inline void ws(Scan *s) {
    while (WS[*s->p]) s->p++;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Nonzero when one of 8 bytes is not PLAIN: below 0x20, a quote, a backslash, or non-ASCII. */
static inline uint64_t special8(uint64_t v) {
    uint64_t quote = v ^ (ONES * '"'), backslash = v ^ (ONES * '\\');
    return ((v - ONES * 0x20) | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | v) & HIGHS;
}

static inline int hexval(unsigned char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int hex4(const unsigned char *p, const unsigned char *end) {
    if (end - p < 4) return -1;
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    if ((a | b | c | d) < 0) return -1;
    return (a << 12) | (b << 8) | (c << 4) | d;
}

/* A string, s->p just after its opening quote: valid UTF-8, valid escapes, no
 * control characters. Sets its raw bytes (between the quotes), its length in
 * code points, and whether it has escapes; s->p ends after the closing quote.
 * Returns 0, or -1 when it is not a string orjson reads. */
static int scan_string(Scan *s, const unsigned char **start, Py_ssize_t *len, Py_ssize_t *points, int *escaped) {
    const unsigned char *p = s->p, *end = s->end;
    Py_ssize_t n = 0;
    int esc = 0;
    *start = p;
    for (;;) {
        /* the common case: printable ASCII (the bytes object's trailing NUL stops the loop at its end) */
        const unsigned char *run = p;
        for (;;) { /* 8 bytes at a time: the first special one is the lowest flagged */
            uint64_t word, flags;
            if (end - p < 8) {
                while (PLAIN[*p]) p++;
                break;
            }
            memcpy(&word, p, 8);
            if ((flags = special8(word)) != 0) {
                p += __builtin_ctzll(flags) >> 3;
                break;
            }
            p += 8;
        }
        n += p - run;
        if (p >= end) return -1;
        unsigned char ch = *p;
        if (ch == '"') break;
        if (ch < 0x20) return -1;
        if (ch == '\\') {
            esc = 1;
            if (p + 1 >= end) return -1;
            unsigned char e = p[1];
            if (e == 'u') {
                int u = hex4(p + 2, end);
                if (u < 0) return -1;
                p += 6;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return -1;
                    int low = hex4(p + 2, end);
                    if (low < 0xDC00 || low > 0xDFFF) return -1;
                    p += 6;
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    return -1;
                }
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                p += 2;
            } else {
                return -1;
            }
            n++;
            continue;
        }
        /* a multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates, <= U+10FFFF) */
        Py_ssize_t left = end - p;
        if (ch >= 0xC2 && ch <= 0xDF) {
            if (left < 2 || (p[1] & 0xC0) != 0x80) return -1;
            p += 2;
        } else if (ch >= 0xE0 && ch <= 0xEF) {
            if (left < 3 || (p[2] & 0xC0) != 0x80) return -1;
            unsigned char b = p[1];
            if (ch == 0xE0 ? (b < 0xA0 || b > 0xBF) : ch == 0xED ? (b < 0x80 || b > 0x9F) : (b & 0xC0) != 0x80)
                return -1;
            p += 3;
        } else if (ch >= 0xF0 && ch <= 0xF4) {
            if (left < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return -1;
            unsigned char b = p[1];
            if (ch == 0xF0 ? (b < 0x90 || b > 0xBF) : ch == 0xF4 ? (b < 0x80 || b > 0x8F) : (b & 0xC0) != 0x80)
                return -1;
            p += 4;
        } else {
            return -1;
        }
        n++;
    }
    *len = p - *start;
    *points = n;
    *escaped = esc;
    s->p = p + 1;
    return 0;
}

/* A number token at s->p. Sets whether it is an integer token and, if so, its
 * value; a float's value only when ``want_value`` (or when it may overflow).
 * Returns 0, or -1 when it is no JSON number, an integer of more than
 * MAX_DIGITS digits, or a float that overflows a double (orjson refuses it). */
static int scan_number(Scan *s, int *is_int, long long *ival, double *fval, int want_value) {
    const unsigned char *p = s->p, *end = s->end, *start = p;
    int negative = 0, exponent = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end) return -1;
    const unsigned char *digits = p;
    long long v = 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            if (p - digits >= MAX_DIGITS) return -1; /* checked first: 19 digits may overflow */
            v = v * 10 + (*p - '0');
            p++;
        }
    } else {
        return -1;
    }
    int integer = 1;
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        exponent = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    s->p = p;
    *is_int = integer;
    if (integer) {
        *ival = negative ? -v : v;
        return 0;
    }
    if (want_value || exponent || p - start > 300) {
        /* the token ends at a delimiter or at the bytes object's trailing NUL */
        char *stop;
        double d = PyOS_string_to_double((const char *)start, &stop, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        if (!isfinite(d)) return -1;
        *fval = d;
    }
    return 0;
}

static int literal(Scan *s, const char *word, Py_ssize_t n) {
    if (s->end - s->p < n || memcmp(s->p, word, n) != 0) return -1;
    s->p += n;
    return 0;
}

/* Whether a string's text matches ``pattern``: a character class (bytes: 256
 * flags, then the least length), else a callable (re.Pattern.search) called on
 * the text. 1 found, 0 not, -1 refuse. */
static int matches(Scan *s, PyObject *pattern, const unsigned char *start, Py_ssize_t len, int escaped) {
    if (escaped) return -1; /* rare: left to the slow path rather than unescaped here */
    if (PyBytes_CheckExact(pattern)) {
        const unsigned char *allowed = (const unsigned char *)PyBytes_AS_STRING(pattern);
        if (len < allowed[256]) return 0; /* a UTF-8 string has at least as many bytes as characters */
        for (Py_ssize_t i = 0; i < len; i++)
            if (!allowed[start[i]]) return 0;
        return 1;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)start, len, "strict");
    if (text == NULL) {
        PyErr_Clear();
        return -1;
    }
    PyObject *found = PyObject_CallOneArg(pattern, text);
    Py_DECREF(text);
    if (found == NULL) {
        s->error = 1;
        return -1;
    }
    int truth = PyObject_IsTrue(found);
    Py_DECREF(found);
    if (truth < 0) s->error = 1;
    return truth > 0 ? 1 : 0;
}

static int in_enum(Scan *s, PyObject *values, const unsigned char *start, Py_ssize_t len, int escaped) {
    if (escaped) return 0;
    PyObject *text = PyUnicode_DecodeUTF8((const char *)start, len, "strict");
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    int found = PySet_Contains(values, text);
    Py_DECREF(text);
    if (found < 0) s->error = 1;
    return found > 0;
}

static int value(Scan *s, int index, int *cls);

static inline unsigned key_hash(const unsigned char *key, Py_ssize_t len) {
    if (len == 0) return 0;
    return (unsigned)len * 0x9E37u + key[0] * 31u + key[len - 1] * 7u + key[len / 2];
}

static const Prop *find_prop(const Node *node, const unsigned char *key, Py_ssize_t len) {
    for (unsigned at = key_hash(key, len) & node->mask;; at = (at + 1) & node->mask) {
        int index = node->slots[at];
        if (index < 0) return NULL;
        const Prop *prop = &node->props[index];
        if (prop->len == len && memcmp(prop->key, key, (size_t)len) == 0) return prop;
    }
}

/* The props' hash slots: at least twice as many as props, so lookups stop at a free one. */
static int hash_props(Node *node) {
    unsigned size = 4;
    while (size < 2u * (unsigned)node->nprops) size *= 2;
    node->slots = PyMem_Malloc(size * sizeof(short));
    if (node->slots == NULL) return -1;
    memset(node->slots, 0xff, size * sizeof(short));
    node->mask = size - 1;
    for (int i = 0; i < node->nprops; i++) {
        const Prop *prop = &node->props[i];
        unsigned at = key_hash((const unsigned char *)prop->key, prop->len) & node->mask;
        while (node->slots[at] >= 0) at = (at + 1) & node->mask;
        node->slots[at] = (short)i;
    }
    return 0;
}

/* Whether a branch's field is there with one of its types. For an "if"
 * (``as_if``), a struct with no value set counts as an object and any number
 * as an integer, so the rule applies more often, never less; elsewhere they do
 * not count (stricter). */
static int branch_holds(const Branch *b, const unsigned char *classes, int as_if) {
    switch (classes[b->field]) {
    case C_STRUCT0: return as_if && (b->types & T_OBJ) != 0;
    case C_BOOL: return (b->types & T_BOOL) != 0;
    case C_INT: return (b->types & T_INT) != 0;
    case C_FLOAT: return (b->types & (as_if ? T_INT | T_FLOAT : T_FLOAT)) != 0; /* 1.0 is an integer there */
    case C_STR: return (b->types & T_STR) != 0;
    case C_LIST0: case C_LIST: return (b->types & T_ARR) != 0;
    case C_MAP0: case C_MAP: case C_STRUCT: return (b->types & T_OBJ) != 0;
    default: return 0; /* absent, null */
    }
}

/* After "{" or "[": 1 when a member or element follows, 0 when the closing byte
 * does (it is consumed: the container is empty). */
static inline int opens(Scan *s, unsigned char close) {
    ws(s);
    if (*s->p != close) return 1;
    s->p++;
    return 0;
}

/* After a member or element: 1 when another follows (its "," consumed), 0 at
 * the closing byte (consumed), -1 for anything else. (*s->p is the bytes
 * object's trailing NUL at its end: neither.) */
static inline int goes_on(Scan *s, unsigned char close) {
    ws(s);
    if (*s->p == ',') {
        s->p++;
        ws(s);
        return 1;
    }
    if (*s->p != close) return -1;
    s->p++;
    return 0;
}

/* A member's key and its ":": the key's bytes, which must have no escape. */
static int member_key(Scan *s, const unsigned char **key, Py_ssize_t *len) {
    Py_ssize_t points;
    int escaped;
    if (*s->p != '"') return -1;
    s->p++;
    if (scan_string(s, key, len, &points, &escaped) < 0 || escaped) return -1;
    ws(s);
    if (*s->p != ':') return -1;
    s->p++;
    ws(s);
    return 0;
}

/* An object of a struct node; s->p after its "{". */
static int object_struct(Scan *s, const Node *node, int *cls) {
    unsigned char classes[MAX_PROPS];
    memset(classes, C_ABSENT, (size_t)node->nprops);
    for (int more = opens(s, '}'); more; more = goes_on(s, '}')) {
        const unsigned char *key;
        Py_ssize_t len;
        int field_cls;
        if (more < 0 || member_key(s, &key, &len) < 0) return -1;
        const Prop *prop = find_prop(node, key, len);
        if (prop != NULL) {
            int at = (int)(prop - node->props);
            if (classes[at] != C_ABSENT) return -1; /* a duplicate key */
            if (value(s, prop->node, &field_cls) < 0) return -1;
            classes[at] = (unsigned char)field_cls;
        } else if (node->unknown < 0 || value(s, node->unknown, &field_cls) < 0) {
            return -1;
        }
    }
    int filled = 0;
    for (int i = 0; i < node->nprops; i++) {
        unsigned char c = classes[i];
        if (node->props[i].required && (c == C_ABSENT || c == C_NULL)) return -1;
        if (c == C_BOOL || c == C_INT || c == C_FLOAT || c == C_STR || c == C_LIST || c == C_MAP) filled = 1;
    }
    for (int r = 0; r < node->nrules; r++) {
        const Rule *rule = &node->rules[r];
        int holds = 0;
        if (rule->if_then) {
            holds = !branch_holds(&rule->branches[0], classes, 1) || branch_holds(&rule->branches[1], classes, 0);
        } else {
            for (int b = 0; b < rule->count && !holds; b++) holds = branch_holds(&rule->branches[b], classes, 0);
        }
        if (!holds) return -1;
    }
    if (node->must_be_set && !filled) return -1;
    *cls = filled ? C_STRUCT : C_STRUCT0;
    return 0;
}

/* An object of a map node; s->p after its "{". */
static int object_map(Scan *s, const Node *node, int *cls) {
    Py_ssize_t count = 0;
    for (int more = opens(s, '}'); more; more = goes_on(s, '}')) {
        const unsigned char *key;
        Py_ssize_t len;
        int item_cls;
        if (more < 0 || member_key(s, &key, &len) < 0) return -1;
        if (node->key_pattern != NULL && matches(s, node->key_pattern, key, len, 0) != 1) return -1;
        if (value(s, node->map_item, &item_cls) < 0) return -1;
        count++;
    }
    /* duplicate keys count twice here, once in the parsed dict: only min_props <= 1 is compiled */
    if (count < node->min_props || (node->max_props >= 0 && count > node->max_props)) return -1;
    *cls = count ? C_MAP : C_MAP0;
    return 0;
}

static int array(Scan *s, const Node *node, int *cls) {
    Py_ssize_t count = 0;
    int item = (node->types & T_ANY) ? -1 : node->items;
    for (int more = opens(s, ']'); more; more = goes_on(s, ']')) {
        int item_cls;
        if (more < 0 || value(s, item, &item_cls) < 0) return -1;
        count++;
    }
    if (count < node->min_items || (node->max_items >= 0 && count > node->max_items)) return -1;
    *cls = count ? C_LIST : C_LIST0;
    return 0;
}

/* Any JSON value at s->p, checked against node ``index`` (-1: any value).
 * Sets its class; returns 0, or -1 to refuse the line. */
static int value(Scan *s, int index, int *cls) {
    /* any value; an object of it: a map of any values */
    static const Node any = {.types = T_ANY, .unknown = -1, .max_len = -1, .max_items = -1, .max_props = -1,
                             .items = -1, .map_item = -1};
    static const Node any_map = {.types = T_MAP, .unknown = -1, .max_len = -1, .max_items = -1, .max_props = -1,
                                 .items = -1, .map_item = -1};
    const Node *node = index < 0 ? &any : &s->c->nodes[index];
    unsigned types = node->types;
    int is_any = (types & T_ANY) != 0;
    if (s->p >= s->end) return -1;
    switch (*s->p) {
    case '"': {
        if (!is_any && !(types & T_STR)) return -1;
        const unsigned char *start;
        Py_ssize_t len, points;
        int escaped;
        s->p++;
        if (scan_string(s, &start, &len, &points, &escaped) < 0) return -1;
        *cls = C_STR;
        if (is_any) return 0;
        if (points < node->min_len || (node->max_len >= 0 && points > node->max_len)) return -1;
        if (node->enum_values != NULL && !in_enum(s, node->enum_values, start, len, escaped)) return -1;
        if (node->pattern != NULL && matches(s, node->pattern, start, len, escaped) != 1) return -1;
        return 0;
    }
    case '{': {
        if (++s->depth > MAX_DEPTH) return -1;
        s->p++;
        int r;
        if (is_any) {
            r = object_map(s, &any_map, cls);
        } else if (types & T_STRUCT) {
            r = object_struct(s, node, cls);
        } else if (types & T_MAP) {
            r = object_map(s, node, cls);
        } else {
            return -1;
        }
        s->depth--;
        return r;
    }
    case '[': {
        if (!is_any && !(types & T_ARR)) return -1;
        if (++s->depth > MAX_DEPTH) return -1;
        s->p++;
        int r = array(s, node, cls);
        s->depth--;
        return r;
    }
    case 't':
    case 'f':
        if (!is_any && !(types & T_BOOL)) return -1;
        *cls = C_BOOL;
        return *s->p == 't' ? literal(s, "true", 4) : literal(s, "false", 5);
    case 'n':
        if (!is_any && !(types & T_NULL)) return -1;
        *cls = C_NULL;
        return literal(s, "null", 4);
    default: {
        int is_int;
        long long ival = 0;
        double fval = 0;
        if (!is_any && !(types & (T_INT | T_FLOAT))) return -1;
        int bounded = !is_any && (node->has_min || node->has_max);
        if (scan_number(s, &is_int, &ival, &fval, bounded) < 0) return -1;
        *cls = is_int ? C_INT : C_FLOAT;
        if (is_any) return 0;
        if (is_int) {
            if (!(types & T_INT)) return -1;
            if (types & T_FLOAT) { /* a number: the bounds are doubles */
                fval = (double)ival;
            } else {
                return ival < node->int_min || ival > node->int_max ? -1 : 0;
            }
        } else if (!(types & T_FLOAT)) {
            return -1; /* 1.0 for an integer: refused, as APM Server's integer readers refuse it */
        }
        if ((node->has_min && fval < node->minimum) || (node->has_max && fval > node->maximum)) return -1;
        return 0;
    }
    }
}

/* -- the Checker type ---------------------------------------------------------- */

static void free_nodes(Checker *self) {
    if (self->nodes != NULL) {
        for (int i = 0; i < self->nnodes; i++) {
            Node *node = &self->nodes[i];
            PyMem_Free(node->props);
            PyMem_Free(node->slots);
            if (node->rules != NULL) {
                for (int r = 0; r < node->nrules; r++) PyMem_Free(node->rules[r].branches);
                PyMem_Free(node->rules);
            }
        }
        PyMem_Free(self->nodes);
        self->nodes = NULL;
    }
    PyMem_Free(self->keys);
    self->keys = NULL;
    PyMem_Free(self->key_objs);
    self->key_objs = NULL;
}

static int checker_traverse(Checker *self, visitproc visit, void *arg) {
    Py_VISIT(self->refs);
    return 0;
}

static int checker_clear(Checker *self) {
    Py_CLEAR(self->refs);
    return 0;
}

static void checker_dealloc(Checker *self) {
    PyObject_GC_UnTrack(self);
    free_nodes(self);
    checker_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *optional(PyObject *value) { return value == Py_None ? NULL : value; }

/* Props from a tuple of (key bytes, node, required). */
static int read_props(PyObject *seq, Prop **out, int *count, int nnodes) {
    Py_ssize_t n = PyTuple_Size(seq);
    if (n < 0) return -1;
    if (n > MAX_PROPS) {
        PyErr_SetString(PyExc_ValueError, "too many properties");
        return -1;
    }
    *out = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Prop));
    if (*out == NULL) return -1;
    *count = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key;
        int node, required;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(seq, i), "Sip", &key, &node, &required)) return -1;
        if (node < 0 || node >= nnodes) {
            PyErr_SetString(PyExc_ValueError, "node index out of range");
            return -1;
        }
        (*out)[i] = (Prop){PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), node, required};
    }
    return 0;
}

static int read_rules(PyObject *seq, Node *node, int nprops) {
    Py_ssize_t n = PyTuple_Size(seq);
    if (n < 0) return -1;
    node->rules = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Rule));
    if (node->rules == NULL) return -1;
    node->nrules = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *branches;
        Rule *rule = &node->rules[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(seq, i), "pO!", &rule->if_then, &PyTuple_Type, &branches)) return -1;
        Py_ssize_t m = PyTuple_GET_SIZE(branches);
        if (m < 1 || (rule->if_then && m != 2)) {
            PyErr_SetString(PyExc_ValueError, "bad rule");
            return -1;
        }
        rule->branches = PyMem_Calloc((size_t)m, sizeof(Branch));
        if (rule->branches == NULL) return -1;
        rule->count = (int)m;
        for (Py_ssize_t b = 0; b < m; b++) {
            Branch *branch = &rule->branches[b];
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(branches, b), "iI", &branch->field, &branch->types)) return -1;
            if (branch->field < 0 || branch->field >= nprops) {
                PyErr_SetString(PyExc_ValueError, "rule field out of range");
                return -1;
            }
        }
    }
    return 0;
}

static int read_node(PyObject *spec, Node *node, int nnodes) {
    PyObject *pattern, *enum_values, *minimum, *maximum, *props, *rules, *key_pattern;
    if (!PyArg_ParseTuple(spec, "InnOOOOLLinnO!O!piOinn", &node->types, &node->min_len, &node->max_len, &pattern,
                          &enum_values, &minimum, &maximum, &node->int_min, &node->int_max, &node->items,
                          &node->min_items, &node->max_items, &PyTuple_Type, &props, &PyTuple_Type, &rules,
                          &node->must_be_set, &node->unknown, &key_pattern, &node->map_item, &node->min_props,
                          &node->max_props))
        return -1;
    node->pattern = optional(pattern);
    node->enum_values = optional(enum_values);
    node->key_pattern = optional(key_pattern);
    if ((node->pattern != NULL && PyBytes_CheckExact(node->pattern) && PyBytes_GET_SIZE(node->pattern) != 257) ||
        (node->key_pattern != NULL && PyBytes_CheckExact(node->key_pattern) && PyBytes_GET_SIZE(node->key_pattern) != 257)) {
        PyErr_SetString(PyExc_ValueError, "a character class has 256 flags and a least length");
        return -1;
    }
    if (node->enum_values != NULL && !PyFrozenSet_Check(node->enum_values)) {
        PyErr_SetString(PyExc_TypeError, "enum must be a frozenset");
        return -1;
    }
    if ((node->has_min = minimum != Py_None)) {
        node->minimum = PyFloat_AsDouble(minimum);
        if (node->minimum == -1.0 && PyErr_Occurred()) return -1;
    }
    if ((node->has_max = maximum != Py_None)) {
        node->maximum = PyFloat_AsDouble(maximum);
        if (node->maximum == -1.0 && PyErr_Occurred()) return -1;
    }
    if (node->items >= nnodes || node->unknown >= nnodes || node->map_item >= nnodes) {
        PyErr_SetString(PyExc_ValueError, "node index out of range");
        return -1;
    }
    if (read_props(props, &node->props, &node->nprops, nnodes) < 0 || hash_props(node) < 0) return -1;
    return read_rules(rules, node, node->nprops);
}

static int checker_init(Checker *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"nodes", "keys", "whole", NULL};
    PyObject *nodes, *keys;
    int whole = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!|p:Checker", names, &PyTuple_Type, &nodes, &PyTuple_Type, &keys,
                                     &whole))
        return -1;
    self->whole = whole;
    if (self->refs != NULL) { /* a check in use must not change under its callers */
        PyErr_SetString(PyExc_TypeError, "a Checker is initialised once");
        return -1;
    }
    self->refs = PyTuple_Pack(2, nodes, keys);
    if (self->refs == NULL) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(nodes);
    self->nodes = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Node));
    if (self->nodes == NULL) return -1;
    self->nnodes = (int)n;
    for (Py_ssize_t i = 0; i < n; i++)
        if (read_node(PyTuple_GET_ITEM(nodes, i), &self->nodes[i], (int)n) < 0) return -1;
    /* keys: (key str, key bytes, node) */
    Py_ssize_t k = PyTuple_GET_SIZE(keys);
    self->keys = PyMem_Calloc((size_t)(k ? k : 1), sizeof(Prop));
    self->key_objs = PyMem_Calloc((size_t)(k ? k : 1), sizeof(PyObject *));
    if (self->keys == NULL || self->key_objs == NULL) return -1;
    self->nkeys = (int)k;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *name, *raw;
        int node;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(keys, i), "USi", &name, &raw, &node)) return -1;
        if (node < 0 || node >= n) {
            PyErr_SetString(PyExc_ValueError, "node index out of range");
            return -1;
        }
        self->keys[i] = (Prop){PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), node, 1};
        self->key_objs[i] = name;
    }
    return 0;
}

/* The key of an envelope line {"<key>": value} whose value its node takes, or -1;
 * for a whole-line check, the first key whose node takes the line. */
static int check_line(Checker *self, const unsigned char *data, Py_ssize_t size, int *error) {
    Scan s = {data, data + size, 0, self, 0};
    const unsigned char *key;
    Py_ssize_t len;
    int cls, found = -1;
    ws(&s);
    if (self->whole) { /* each key's node in turn, from the same place */
        for (int i = 0; i < self->nkeys; i++) {
            Scan t = s;
            int r = value(&t, self->keys[i].node, &cls);
            if ((*error = t.error)) return -1;
            ws(&t);
            if (r == 0 && t.p == t.end) return i;
        }
        return -1;
    }
    if (*s.p != '{') return -1;
    s.p++;
    ws(&s);
    if (member_key(&s, &key, &len) < 0) return -1;
    for (int i = 0; i < self->nkeys; i++) {
        if (self->keys[i].len == len && memcmp(self->keys[i].key, key, len) == 0) {
            found = i;
            break;
        }
    }
    if (found < 0) return -1;
    int r = value(&s, self->keys[found].node, &cls);
    *error = s.error;
    if (r < 0 || goes_on(&s, '}') != 0) return -1;
    ws(&s);
    return s.p == s.end ? found : -1;
}

static PyObject *checker_call(Checker *self, PyObject *line) {
    if (!PyBytes_Check(line)) {
        PyErr_SetString(PyExc_TypeError, "a line must be bytes");
        return NULL;
    }
    int error = 0;
    int found = check_line(self, (const unsigned char *)PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line), &error);
    if (error) return NULL;
    if (found < 0) Py_RETURN_NONE;
    return Py_NewRef(self->key_objs[found]);
}

static PyObject *checker_vcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "check(line) takes one line");
        return NULL;
    }
    return checker_call((Checker *)self, args[0]);
}

static PyObject *checker_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Checker *self = (Checker *)type->tp_alloc(type, 0);
    if (self != NULL) *(vectorcallfunc *)((char *)self + type->tp_vectorcall_offset) = checker_vcall;
    return (PyObject *)self;
}

typedef struct {
    Checker base;
    vectorcallfunc vectorcall;
} CheckerObject;

static PyTypeObject CheckerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ndintake.core._bytecheck.Checker",
    .tp_doc = PyDoc_STR("Checker(nodes, keys, whole=False): check(line) -> the line's key if its value is valid, else None."),
    .tp_basicsize = sizeof(CheckerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(CheckerObject, vectorcall),
    .tp_new = checker_new,
    .tp_init = (initproc)checker_init,
    .tp_dealloc = (destructor)checker_dealloc,
    .tp_traverse = (traverseproc)checker_traverse,
    .tp_clear = (inquiry)checker_clear,
    .tp_call = PyVectorcall_Call,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ndintake.core._bytecheck",
    .m_doc = "The C half of ndintake.core.bytecheck: a one-pass accept check over JSON bytes.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__bytecheck(void) {
    init_tables();
    if (PyType_Ready(&CheckerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Checker", (PyObject *)&CheckerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 || PyModule_AddIntConstant(m, "MAX_PROPS", MAX_PROPS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
