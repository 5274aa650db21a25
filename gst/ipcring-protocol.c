/* Encoding and decoding of ipcring records (see ipcring-protocol.h).
 *
 * Decoding treats its input as hostile: lengths are checked, strings are
 * copied and bounded before parsing, every structure and caps string is
 * checked against a strict grammar before GStreamer's parser sees it (see
 * "What the reader accepts" below), and every event is rebuilt through the
 * public constructor of its type from fields read with typed getters, so a
 * malformed structure can never become an event that crashes a parser. */
#include "ipcring-protocol.h"

#include <math.h>
#include <string.h>

/* ---- What the reader accepts -------------------------------------------
 *
 * GStreamer's structure and caps parser (1.22) is not safe on hostile text:
 * names that do not start with a letter trip a critical; a (buffer) value
 * with a non-hex digit is used after it is freed; (GDateTime) values that do
 * not parse and (taglist) values that do not start with "taglist" trip
 * criticals; a list or array whose element does not parse (or that the
 * string ends inside) is leaked; ranges with start >= end trip criticals;
 * trailing text without an end pointer warns; nesting has no depth limit;
 * and every name it meets becomes a GQuark that is never freed.
 *
 * So every string is first walked by check_structure()/check_caps(), which
 * follow the parser's own grammar (the same tokens, the same whitespace
 * rules, the same type resolution) but accept only a subset of it:
 *   - structure names: a letter, then letters, digits and "/-_.:+" (what
 *     gst_structure_validate_name() accepts), unquoted; not the 0.10 raw
 *     names GStreamer warns about; in caps not EMPTY, ANY or NONE (they
 *     would print as the special caps of that name);
 *   - caps features: namespace:Name (letters, then a letter and letters or
 *     digits), separated by ", "; not ANY;
 *   - field names: the parser's unquoted string characters;
 *   - value types (casts and their inheritance into lists and arrays):
 *     int, uint, int64, uint64, long, ulong, uchar, float, double, boolean,
 *     string, fraction, bitmask and flag sets anywhere; buffer anywhere
 *     but in a tag list, as an even number of hex digits, at least two;
 *     a tag list only
 *     as a field of a tag event; date and datetime (GstDateTime) only inside
 *     that tag list; a structure or caps only in custom events; ranges
 *     of int, int64, double and fraction with start < end (and a step that
 *     divides both) only in custom events; lists and arrays of all these;
 *   - at most MAX_DEPTH levels of lists, arrays, ranges and nested strings;
 *   - nothing after the structure (a top-level event string may end in ';').
 * Every scalar is deserialized once on its own, with the type and the text
 * the parser will use, so that the parser never fails inside a list (which
 * would leak); a quoted structure, caps or tag list is checked as its
 * deserializer unwraps it, octal escapes (a backslash and three octal
 * digits) read as the bytes they stand for. Names that are not GQuarks yet
 * are charged to a process-wide budget of IPCRING_MAX_NEW_NAMES (refunded
 * for names that a refused record did not intern after all); a record that
 * needs more is refused. The encoder applies the same check to what it
 * writes, so the sink never carries an event that a reader would refuse. */

#define MAX_DEPTH 16
#define MAX_NAME_LEN 255

enum
{
  ALLOW_NESTED = 1 << 0,        /* structure and caps values */
  ALLOW_RANGES = 1 << 1,
  ALLOW_TAGLIST = 1 << 2,       /* a tag list value */
  IN_TAGLIST = 1 << 3,          /* dates, no buffers */
};

typedef struct
{
  guint depth;
  guint in_list;                /* lists and arrays around the value */
  GHashTable *new_names;        /* NULL: no budget (the encoder) */
  const gchar *why;
} Check;

static GMutex names_lock;
static guint names_used;

static gboolean
fail (Check * c, const gchar * why)
{
  if (!c->why)
    c->why = why;
  return FALSE;
}

static gboolean
is_string_char (gchar ch)
{
  return g_ascii_isalnum (ch) || ch == '_' || ch == '-' || ch == '+' || ch == '/'
      || ch == ':' || ch == '.';
}

static const gchar *
simple_end (const gchar * s)
{
  while (is_string_char (*s))
    s++;
  return s;
}

static const gchar *
skip_space (const gchar * s)
{
  while (g_ascii_isspace (*s))
    s++;
  return s;
}

/* A name the parser will intern: bounded, and charged to the budget unless
 * it is a GQuark already. */
static gboolean
charge_name (Check * c, const gchar * name, gsize len)
{
  if (len > MAX_NAME_LEN)
    return fail (c, "name too long");
  if (!c->new_names)
    return TRUE;
  gchar *n = g_strndup (name, len);
  if (g_quark_try_string (n) || g_hash_table_contains (c->new_names, n)) {
    g_free (n);
    return TRUE;
  }
  g_mutex_lock (&names_lock);
  gboolean ok = names_used < IPCRING_MAX_NEW_NAMES;
  if (ok)
    names_used++;
  g_mutex_unlock (&names_lock);
  if (!ok) {
    g_free (n);
    return fail (c, "too many distinct new names (structure, field, tag or caps feature)");
  }
  g_hash_table_add (c->new_names, n);
  return TRUE;
}

static void
check_init (Check * c, gboolean budget)
{
  c->depth = 0;
  c->in_list = 0;
  c->why = NULL;
  c->new_names = budget ? g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) : NULL;
}

/* Refunds the names that did not become GQuarks after all. */
static void
check_finish (Check * c)
{
  if (!c->new_names)
    return;
  guint refund = 0;
  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init (&it, c->new_names);
  while (g_hash_table_iter_next (&it, &key, NULL))
    if (!g_quark_try_string (key))
      refund++;
  g_mutex_lock (&names_lock);
  names_used -= MIN (refund, names_used);
  g_mutex_unlock (&names_lock);
  g_hash_table_unref (c->new_names);
  c->new_names = NULL;
}

/* The type a cast names, resolved as gst_structure_gtype_from_abbr() does:
 * GStreamer's abbreviations, else the GType of that name. */
static GType
type_from_name (const gchar * name, gsize len)
{
  static const struct
  {
    const gchar *abbr;
    GType (*type) (void);
  } abbrs[] = {
    {"int", NULL}, {"i", NULL}, {"uint", NULL}, {"u", NULL}, {"float", NULL},
    {"f", NULL}, {"double", NULL}, {"d", NULL}, {"boolean", NULL}, {"bool", NULL},
    {"b", NULL}, {"string", NULL}, {"str", NULL}, {"s", NULL},
    {"buffer", gst_buffer_get_type}, {"fraction", gst_fraction_get_type},
    {"structure", gst_structure_get_type}, {"date", g_date_get_type},
    {"datetime", gst_date_time_get_type}, {"bitmask", gst_bitmask_get_type},
    {"flagset", gst_flagset_get_type}, {"sample", gst_sample_get_type},
    {"taglist", gst_tag_list_get_type}, {"type", NULL}, {"array", gst_value_array_get_type},
    {"list", gst_value_list_get_type},
  };
  static const GType fundamental[] = {
    G_TYPE_INT, G_TYPE_INT, G_TYPE_UINT, G_TYPE_UINT, G_TYPE_FLOAT, G_TYPE_FLOAT,
    G_TYPE_DOUBLE, G_TYPE_DOUBLE, G_TYPE_BOOLEAN, G_TYPE_BOOLEAN, G_TYPE_BOOLEAN,
    G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING,
  };
  gchar *n = g_strndup (name, len);
  GType t = G_TYPE_INVALID;
  for (gsize i = 0; i < G_N_ELEMENTS (abbrs); i++) {
    if (strcmp (n, abbrs[i].abbr) != 0)
      continue;
    if (i < G_N_ELEMENTS (fundamental))
      t = fundamental[i];
    else if (abbrs[i].type)
      t = abbrs[i].type ();
    else
      t = G_TYPE_GTYPE;
    g_free (n);
    return t;
  }
  t = g_type_from_name (n);
  g_free (n);
  return t;
}

static gboolean
type_allowed (GType t, guint flags)
{
  if (t == G_TYPE_INT || t == G_TYPE_UINT || t == G_TYPE_INT64 || t == G_TYPE_UINT64
      || t == G_TYPE_LONG || t == G_TYPE_ULONG || t == G_TYPE_UCHAR || t == G_TYPE_FLOAT
      || t == G_TYPE_DOUBLE || t == G_TYPE_BOOLEAN || t == G_TYPE_STRING
      || t == GST_TYPE_FRACTION || t == GST_TYPE_BITMASK)
    return TRUE;
  if (g_type_is_a (t, GST_TYPE_FLAG_SET))
    return TRUE;
  if (t == GST_TYPE_BUFFER)
    return !(flags & IN_TAGLIST);
  if (t == GST_TYPE_STRUCTURE || t == GST_TYPE_CAPS)
    return (flags & ALLOW_NESTED) != 0;
  if (t == GST_TYPE_TAG_LIST)
    return (flags & ALLOW_TAGLIST) != 0;
  if (t == G_TYPE_DATE || t == GST_TYPE_DATE_TIME)
    return (flags & IN_TAGLIST) != 0;
  return FALSE;
}

static gboolean check_structure (Check * c, const gchar * s, const gchar ** after,
    guint flags, gboolean caps, gboolean taglist);
static gboolean check_caps (Check * c, const gchar * s, guint flags, gboolean nested);

/* A quoted value as GStreamer's deserializers of structures, caps and tag
 * lists read it (gst_string_unwrap()): the text between the quotes, where a
 * backslash and three octal digits, the first 0 to 3, are that byte; a
 * backslash then 0 to 3 without two octal digits after it is an error; a
 * backslash before any other character is that character. q is a whole
 * quoted value as check_value() cuts it (its last character is its only
 * unescaped quote). NULL on error. */
static gchar *
string_unwrap (const gchar * q)
{
  gsize n = strlen (q);
  gchar *out = g_malloc (n);
  gchar *w = out;
  for (const gchar * r = q + 1; r < q + n - 1; r++) {
    if (*r == '\\') {
      r++;
      if (*r >= '0' && *r <= '3') {
        if (r[1] < '0' || r[1] > '7' || r[2] < '0' || r[2] > '7') {
          g_free (out);
          return NULL;
        }
        *w++ = (gchar) (((r[0] - '0') << 6) | ((r[1] - '0') << 3) | (r[2] - '0'));
        r += 2;
        continue;
      }
    }
    *w++ = *r;
  }
  *w = '\0';
  return out;
}

/* The text of a nested structure, caps or tag list is whole. */
static gboolean
check_nested (Check * c, GType type, const gchar * v)
{
  const gchar *end = NULL;
  if (c->depth >= MAX_DEPTH)
    return fail (c, "values nested too deeply");
  if (*v == '"')
    return fail (c, "nested value quoted twice");
  c->depth++;
  guint in_list = c->in_list;
  c->in_list = 0;
  gboolean ok;
  if (type == GST_TYPE_CAPS)
    ok = check_caps (c, v, ALLOW_NESTED | ALLOW_RANGES, TRUE);
  else if (type == GST_TYPE_TAG_LIST)
    ok = check_structure (c, v, &end, IN_TAGLIST, FALSE, TRUE) && *end == '\0';
  else
    ok = check_structure (c, v, &end, ALLOW_NESTED | ALLOW_RANGES, FALSE, FALSE)
        && *end == '\0';
  c->depth--;
  c->in_list = in_list;
  return ok || fail (c, "nested value has text after its end");
}

/* Deserializes v as the parser will (with type, or trying the parser's
 * list of types when there is none). The value is kept in out if given. */
static gboolean
check_scalar (Check * c, GType type, const gchar * v, GValue * out)
{
  if (type == G_TYPE_INVALID) {
    const GType tries[] = { G_TYPE_INT, G_TYPE_DOUBLE, GST_TYPE_FRACTION, GST_TYPE_FLAG_SET,
      G_TYPE_BOOLEAN, G_TYPE_STRING
    };
    /* The parser tries the types other than string on the text between the
     * quotes of a quoted value as it is (escapes and all), and the string
     * on the whole quoted value. */
    gchar *inner = *v == '"' ? g_strndup (v + 1, strlen (v) - 2) : NULL;
    for (gsize i = 0; i < G_N_ELEMENTS (tries); i++) {
      GValue tmp = G_VALUE_INIT;
      g_value_init (&tmp, tries[i]);
      if (gst_value_deserialize (&tmp, inner && tries[i] != G_TYPE_STRING ? inner : v)) {
        g_free (inner);
        if (c->in_list && G_VALUE_HOLDS_STRING (&tmp) && !g_value_get_string (&tmp)) {
          g_value_unset (&tmp);
          return fail (c, "NULL string in a list or array");
        }
        if (out)
          *out = tmp;
        else
          g_value_unset (&tmp);
        return TRUE;
      }
      g_value_unset (&tmp);
    }
    g_free (inner);
    return fail (c, "value does not parse");
  }
  if (type == GST_TYPE_BUFFER) {
    gsize n = strlen (v);
    /* GStreamer 1.22 frees an empty buffer's value before unmapping it (a
     * use after free), also when it parses the whole string later. */
    if (n == 0)
      return fail (c, "empty buffer value (GStreamer cannot parse it safely)");
    if (n % 2)
      return fail (c, "buffer value of odd length");
    for (gsize i = 0; i < n; i++)
      if (!g_ascii_isxdigit (v[i]))
        return fail (c, "buffer value with a character that is not a hex digit");
  } else if (type == GST_TYPE_TAG_LIST || type == GST_TYPE_STRUCTURE || type == GST_TYPE_CAPS) {
    /* The deserializer unwraps a quoted value itself, octal escapes and
     * all: the text checked is the text it will parse. */
    gchar *text = *v == '"' ? string_unwrap (v) : g_strdup (v);
    if (!text)
      return fail (c, "quoted value with a backslash and 0 to 3 not followed by two octal "
          "digits");
    gboolean ok;
    if (type == GST_TYPE_TAG_LIST && !g_str_has_prefix (text, "taglist"))
      ok = fail (c, "tag list value not starting with \"taglist\"");
    else
      ok = check_nested (c, type, text);
    g_free (text);
    if (!ok)
      return FALSE;
  }
  GValue tmp = G_VALUE_INIT;
  g_value_init (&tmp, type);
  if (!gst_value_deserialize (&tmp, v)) {
    g_value_unset (&tmp);
    return fail (c, "value does not parse as its type");
  }
  /* GStreamer cannot print a NULL string in a list (it criticizes). */
  if (c->in_list && G_VALUE_HOLDS_STRING (&tmp) && !g_value_get_string (&tmp)) {
    g_value_unset (&tmp);
    return fail (c, "NULL string in a list or array");
  }
  if (out)
    *out = tmp;
  else
    g_value_unset (&tmp);
  return TRUE;
}

static gboolean
range_ok (const GValue * v, guint n)
{
  GType t = G_VALUE_TYPE (&v[0]);
  if (n < 2 || G_VALUE_TYPE (&v[1]) != t || (n == 3 && G_VALUE_TYPE (&v[2]) != t))
    return FALSE;
  if (t == G_TYPE_INT || t == G_TYPE_INT64) {
    gint64 a, b, step = 1;
    if (t == G_TYPE_INT) {
      a = g_value_get_int (&v[0]);
      b = g_value_get_int (&v[1]);
      if (n == 3)
        step = g_value_get_int (&v[2]);
    } else {
      a = g_value_get_int64 (&v[0]);
      b = g_value_get_int64 (&v[1]);
      if (n == 3)
        step = g_value_get_int64 (&v[2]);
    }
    return a < b && step > 0 && a % step == 0 && b % step == 0;
  }
  if (n != 2)
    return FALSE;
  if (t == G_TYPE_DOUBLE)
    return g_value_get_double (&v[0]) < g_value_get_double (&v[1]);
  if (t == GST_TYPE_FRACTION)
    return gst_value_compare (&v[0], &v[1]) == GST_VALUE_LESS_THAN;
  return FALSE;
}

/* One value at s, as _priv_gst_value_parse_value() reads it. */
static gboolean
check_value (Check * c, const gchar * s, GType type, const gchar ** after, guint flags,
    GValue * out)
{
  s = skip_space (s);
  if (*s == '(') {
    s = skip_space (s + 1);
    const gchar *e = simple_end (s);
    if (e == s)
      return fail (c, "type name missing");
    type = type_from_name (s, e - s);
    if (type == G_TYPE_INVALID || !type_allowed (type, flags))
      return fail (c, "value of a type the reader does not accept");
    s = skip_space (e);
    if (*s != ')')
      return fail (c, "type name not closed");
    s++;
  }
  s = skip_space (s);
  if (*s == '[' || *s == '{' || *s == '<') {
    if (out)
      return fail (c, "range of lists");
    if (c->depth >= MAX_DEPTH)
      return fail (c, "values nested too deeply");
    if (*s == '[' && !(flags & ALLOW_RANGES))
      return fail (c, "range where none is accepted");
    c->depth++;
    gboolean ok = TRUE;
    if (*s == '[') {
      GValue v[3] = { G_VALUE_INIT, G_VALUE_INIT, G_VALUE_INIT };
      guint n = 0;
      s++;
      while (ok) {
        if (n == 3) {
          ok = fail (c, "range of more than three values");
          break;
        }
        if (!check_value (c, s, type, &s, flags, &v[n])) {
          ok = FALSE;
          break;
        }
        n++;
        s = skip_space (s);
        if (*s == ']') {
          s++;
          break;
        }
        if (*s != ',')
          ok = fail (c, "range not closed");
        else
          s = skip_space (s + 1);
      }
      if (ok && !range_ok (v, n))
        ok = fail (c, "range that GStreamer cannot make");
      for (guint i = 0; i < n; i++)
        g_value_unset (&v[i]);
    } else {
      gchar close = *s == '{' ? '}' : '>';
      c->in_list++;
      s = skip_space (s + 1);
      if (*s == close)
        s++;
      else {
        while (ok) {
          if (!check_value (c, s, type, &s, flags, NULL)) {
            ok = FALSE;
            break;
          }
          s = skip_space (s);
          if (*s == close) {
            s++;
            break;
          }
          if (*s != ',')
            ok = fail (c, "list or array not closed");
          else
            s = skip_space (s + 1);
        }
      }
      c->in_list--;
    }
    c->depth--;
    *after = s;
    return ok;
  }
  /* A scalar: a quoted string, which the parser hands to the deserializer
   * as it is, quotes and escapes (check_scalar() does the same), or a run of
   * unquoted string characters. */
  gchar *v;
  /* GStreamer 1.22 hands a quoted buffer value to the buffer deserializer
   * with its quotes, which then frees the buffer before unmapping it; the
   * writer never quotes one. */
  if (*s == '"' && type == GST_TYPE_BUFFER)
    return fail (c, "buffer value quoted");
  if (*s == '"') {
    const gchar *p = s + 1;
    while (*p != '"') {
      if (*p == '\0' || (*p == '\\' && p[1] == '\0'))
        return fail (c, "string not terminated");
      if (*p == '\\')
        p++;
      p++;
    }
    p++;
    v = g_strndup (s, p - s);
    s = p;
  } else {
    const gchar *e = simple_end (s);
    if (e == s)
      return fail (c, "value missing");
    v = g_strndup (s, e - s);
    s = e;
  }
  gboolean ok = check_scalar (c, type, v, out);
  g_free (v);
  *after = s;
  return ok;
}

static gboolean
check_features (Check * c, const gchar * s, const gchar ** after)
{
  for (;;) {
    const gchar *start = s;
    while (g_ascii_isalpha (*s))
      s++;
    if (s == start || *s != ':' || !g_ascii_isalpha (s[1]))
      return fail (c, "caps feature name not valid");
    s++;
    while (g_ascii_isalnum (*s))
      s++;
    if (!charge_name (c, start, s - start))
      return FALSE;
    if (*s == ')') {
      *after = s + 1;
      return TRUE;
    }
    if (s[0] != ',' || s[1] != ' ')
      return fail (c, "caps features not valid");
    s += 2;
  }
}

/* A structure at s, as gst_structure_from_string() and the caps parser read
 * it; *after is past its ';' if it has one. */
static gboolean
check_structure (Check * c, const gchar * s, const gchar ** after, guint flags,
    gboolean caps, gboolean taglist)
{
  s = skip_space (s);
  const gchar *e = simple_end (s);
  if (!g_ascii_isalpha (*s))
    return fail (c, "structure name not starting with a letter");
  gsize len = e - s;
  if ((len >= 12 && (strncmp (s, "video/x-raw-", 12) == 0
              || strncmp (s, "audio/x-raw-", 12) == 0)))
    return fail (c, "structure name of GStreamer 0.10");
  if (caps && ((len == 3 && strncmp (s, "ANY", 3) == 0)
          || (len == 4 && strncmp (s, "NONE", 4) == 0)
          || (len == 5 && strncmp (s, "EMPTY", 5) == 0)))
    return fail (c, "caps structure named EMPTY, ANY or NONE");
  if (taglist && (len != 7 || strncmp (s, "taglist", 7) != 0))
    return fail (c, "tag list structure not named \"taglist\"");
  if (!charge_name (c, s, len))
    return FALSE;
  s = e;
  if (caps && *s == '(' && !check_features (c, s + 1, &s))
    return FALSE;
  for (;;) {
    s = skip_space (s);
    if (*s == ';') {
      s++;
      break;
    }
    if (*s == '\0')
      break;
    if (*s != ',')
      return fail (c, "structure with text between its fields");
    s = skip_space (s + 1);
    e = simple_end (s);
    if (e == s)
      return fail (c, "field name missing");
    if (!charge_name (c, s, e - s))
      return FALSE;
    s = skip_space (e);
    if (*s != '=')
      return fail (c, "field without '='");
    if (!check_value (c, s + 1, G_TYPE_INVALID, &s, flags, NULL))
      return FALSE;
  }
  *after = s;
  return TRUE;
}

/* Caps as gst_caps_from_string() reads them. Nested caps may be the special
 * ones. */
static gboolean
check_caps (Check * c, const gchar * s, guint flags, gboolean nested)
{
  if (nested && (strcmp (s, "ANY") == 0 || strcmp (s, "EMPTY") == 0))
    return TRUE;
  guint n = 0;
  for (;;) {
    s = skip_space (s);
    if (*s == '\0')
      break;
    if (!check_structure (c, s, &s, flags, TRUE, FALSE))
      return FALSE;
    n++;
  }
  return n > 0 || fail (c, "caps without a structure");
}

/* An event string: one structure, then nothing but an optional ';'. */
static guint
event_flags (GstEventType type)
{
  switch (type) {
    case GST_EVENT_TAG:
      return ALLOW_TAGLIST;
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:
      return ALLOW_NESTED | ALLOW_RANGES;
    default:
      return 0;
  }
}

static gboolean
check_event_string (Check * c, GstEventType type, const gchar * s)
{
  const gchar *end = NULL;
  if (!check_structure (c, s, &end, event_flags (type), FALSE, FALSE))
    return FALSE;
  return *end == '\0' || fail (c, "event structure has text after its end");
}

/* A tag list with only the tags this process knows, each value of the
 * tag's registered type (and a value GStreamer lets a tag list hold):
 * GStreamer's tag functions assume both. Other tags are dropped. */
static gboolean
tag_value_ok (const gchar * tag, const GValue * v, guint flags)
{
  if (!v || G_VALUE_TYPE (v) != gst_tag_get_type (tag) || !type_allowed (G_VALUE_TYPE (v), flags))
    return FALSE;
  if (G_VALUE_HOLDS_STRING (v)) {
    const gchar *str = g_value_get_string (v);
    return str && *str && g_utf8_validate (str, -1, NULL);
  }
  if (G_TYPE_IS_BOXED (G_VALUE_TYPE (v)))
    return g_value_get_boxed (v) != NULL;
  return TRUE;
}

static GstTagList *
clean_tags (const GstTagList * in)
{
  GstTagList *out = gst_tag_list_new_empty ();
  gint n = gst_tag_list_n_tags (in);
  for (gint i = 0; i < n; i++) {
    const gchar *tag = gst_tag_list_nth_tag_name (in, i);
    if (!tag || !gst_tag_exists (tag))
      continue;
    guint size = gst_tag_list_get_tag_size (in, tag);
    for (guint j = 0; j < size; j++) {
      const GValue *v = gst_tag_list_get_value_index (in, tag, j);
      if (tag_value_ok (tag, v, IN_TAGLIST))
        gst_tag_list_add_value (out, GST_TAG_MERGE_APPEND, tag, v);
    }
  }
  gst_tag_list_set_scope (out, gst_tag_list_get_scope (in));
  return out;
}

static gboolean
ipcring_wire_event_type_is_carried (guint32 type)
{
  switch (type) {
    case GST_EVENT_STREAM_START:
    case GST_EVENT_TAG:
    case GST_EVENT_GAP:
    case GST_EVENT_STREAM_GROUP_DONE:
    case GST_EVENT_SEGMENT_DONE:
    case GST_EVENT_BUFFERSIZE:
    case GST_EVENT_PROTECTION:
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:
      return TRUE;
    default:
      return FALSE;
  }
}

gboolean
ipcring_wire_event_is_carried (GstEvent * event)
{
  return ipcring_wire_event_type_is_carried (GST_EVENT_TYPE (event));
}

/* The structure that represents each carried event on the wire. */
static GstStructure *
event_to_structure (GstEvent * event)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_STREAM_START:{
      const gchar *id = NULL;
      GstStreamFlags flags = 0;
      guint group = 0;
      gst_event_parse_stream_start (event, &id);
      gst_event_parse_stream_flags (event, &flags);
      GstStructure *s = gst_structure_new ("stream-start",
          "flags", G_TYPE_UINT, (guint) flags, NULL);
      if (id)
        gst_structure_set (s, "stream-id", G_TYPE_STRING, id, NULL);
      if (gst_event_parse_group_id (event, &group))
        gst_structure_set (s, "group-id", G_TYPE_UINT, group, NULL);
      return s;
    }
    case GST_EVENT_TAG:{
      GstTagList *tags = NULL;
      gst_event_parse_tag (event, &tags);
      /* Tags whose values a reader refuses (samples: images, attachments)
       * or drops (unregistered, mistyped) are not carried. */
      GstTagList *carried = clean_tags (tags);
      GstStructure *s = gst_structure_new ("tag", "taglist", GST_TYPE_TAG_LIST, carried,
          "scope", G_TYPE_UINT, (guint) gst_tag_list_get_scope (tags), NULL);
      gst_tag_list_unref (carried);
      return s;
    }
    case GST_EVENT_GAP:{
      GstClockTime ts, dur;
      GstGapFlags flags = 0;
      gst_event_parse_gap (event, &ts, &dur);
      gst_event_parse_gap_flags (event, &flags);
      return gst_structure_new ("gap", "timestamp", G_TYPE_UINT64, ts,
          "duration", G_TYPE_UINT64, dur, "flags", G_TYPE_UINT, (guint) flags, NULL);
    }
    case GST_EVENT_STREAM_GROUP_DONE:{
      guint group = 0;
      gst_event_parse_stream_group_done (event, &group);
      return gst_structure_new ("stream-group-done", "group-id", G_TYPE_UINT, group, NULL);
    }
    case GST_EVENT_SEGMENT_DONE:{
      GstFormat format;
      gint64 position;
      gst_event_parse_segment_done (event, &format, &position);
      return gst_structure_new ("segment-done", "format", G_TYPE_UINT, (guint) format,
          "position", G_TYPE_INT64, position, NULL);
    }
    case GST_EVENT_BUFFERSIZE:{
      GstFormat format;
      gint64 minsize, maxsize;
      gboolean async;
      gst_event_parse_buffer_size (event, &format, &minsize, &maxsize, &async);
      return gst_structure_new ("buffersize", "format", G_TYPE_UINT, (guint) format,
          "minsize", G_TYPE_INT64, minsize, "maxsize", G_TYPE_INT64, maxsize,
          "async", G_TYPE_BOOLEAN, async, NULL);
    }
    case GST_EVENT_PROTECTION:{
      const gchar *system_id = NULL, *origin = NULL;
      GstBuffer *data = NULL;
      gst_event_parse_protection (event, &system_id, &data, &origin);
      GstStructure *s = gst_structure_new ("protection",
          "system-id", G_TYPE_STRING, system_id, "data", GST_TYPE_BUFFER, data, NULL);
      if (origin)
        gst_structure_set (s, "origin", G_TYPE_STRING, origin, NULL);
      return s;
    }
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:{
      const GstStructure *s = gst_event_get_structure (event);
      return s ? gst_structure_copy (s) : NULL;
    }
    default:
      return NULL;
  }
}

/* The part of an EVNT or UEVT record both encoders share: the structure s
 * (taken) as a string, refused if a reader would refuse it or if the record
 * would be larger than max bytes (too_large then says why), after the
 * event's type and seqnum. */
static GBytes *
encode_event_structure (GstEvent * event, GstStructure * s, gsize max, const gchar * too_large,
    const gchar ** why)
{
  gchar *str = gst_structure_to_string (s);
  gst_structure_free (s);
  gsize len = strlen (str);
  IpcRingWireEvent hdr = { (uint32_t) GST_EVENT_TYPE (event), gst_event_get_seqnum (event) };
  if (len > max - sizeof hdr) {
    g_free (str);
    *why = too_large;
    return NULL;
  }
  /* What a reader would refuse is not written. */
  Check c;
  check_init (&c, FALSE);
  if (!check_event_string (&c, GST_EVENT_TYPE (event), str)) {
    g_free (str);
    *why = c.why;
    return NULL;
  }
  guint8 *buf = g_malloc (sizeof hdr + len);
  memcpy (buf, &hdr, sizeof hdr);
  memcpy (buf + sizeof hdr, str, len);
  g_free (str);
  return g_bytes_new_take (buf, sizeof hdr + len);
}

GBytes *
ipcring_wire_encode_event (GstEvent * event, const gchar ** why)
{
  if (!ipcring_wire_event_is_carried (event)) {
    *why = "event type is not carried";
    return NULL;
  }
  GstStructure *s = event_to_structure (event);
  if (!s) {
    *why = "custom event without a structure";
    return NULL;
  }
  return encode_event_structure (event, s, sizeof (IpcRingWireEvent) + IPCRING_MAX_EVENT_STRING,
      "event too large to carry", why);
}

void
ipcring_wire_encode_segment (const GstSegment * seg, guint32 seqnum, IpcRingWireSegment * out)
{
  memset (out, 0, sizeof *out);
  out->format = seg->format;
  out->flags = seg->flags;
  out->rate = seg->rate;
  out->applied_rate = seg->applied_rate;
  out->base = seg->base;
  out->offset = seg->offset;
  out->start = seg->start;
  out->stop = seg->stop;
  out->time = seg->time;
  out->position = seg->position;
  out->duration = seg->duration;
  out->seqnum = seqnum;
}

/* A NUL-terminated private copy of a bounded string with no NUL inside. */
static gchar *
copy_string (const guint8 * data, gsize len, gsize max, const gchar ** why)
{
  if (len > max) {
    *why = "string too long";
    return NULL;
  }
  gchar *s = g_malloc (len + 1);
  memcpy (s, data, len);
  s[len] = '\0';
  if (strlen (s) != len) {
    g_free (s);
    *why = "string contains a NUL byte";
    return NULL;
  }
  return s;
}

GstCaps *
ipcring_wire_decode_caps (const guint8 * data, gsize len, const gchar ** why)
{
  gchar *s = copy_string (data, len, IPCRING_MAX_CAPS_STRING, why);
  if (!s)
    return NULL;
  Check c;
  check_init (&c, TRUE);
  GstCaps *caps = NULL;
  if (check_caps (&c, s, 0, FALSE))
    caps = gst_caps_from_string (s);
  check_finish (&c);
  g_free (s);
  if (c.why) {
    if (caps)
      gst_caps_unref (caps);
    *why = c.why;
    return NULL;
  }
  if (!caps) {
    *why = "caps do not parse";
    return NULL;
  }
  if (!gst_caps_is_fixed (caps)) {
    gst_caps_unref (caps);
    *why = "caps are not fixed";
    return NULL;
  }
  /* What a relay's sink would write for them must decode to equal caps
   * (an untyped list of mixed values, say, prints with the type of its
   * first value and then does not parse). */
  gchar *again_str = gst_caps_to_string (caps);
  Check again_check;
  check_init (&again_check, FALSE);
  GstCaps *again = NULL;
  if (check_caps (&again_check, again_str, 0, FALSE))
    again = gst_caps_from_string (again_str);
  g_free (again_str);
  gboolean same = again && gst_caps_is_equal (again, caps);
  if (again)
    gst_caps_unref (again);
  if (!same) {
    gst_caps_unref (caps);
    *why = "caps would not be written again as themselves";
    return NULL;
  }
  return caps;
}

static gboolean
format_ok (guint32 f)
{
  return f == GST_FORMAT_UNDEFINED || f == GST_FORMAT_DEFAULT || f == GST_FORMAT_BYTES
      || f == GST_FORMAT_TIME || f == GST_FORMAT_BUFFERS || f == GST_FORMAT_PERCENT;
}

GstEvent *
ipcring_wire_decode_segment (const guint8 * data, gsize len, const gchar ** why)
{
  IpcRingWireSegment w;
  if (len != sizeof w) {
    *why = "segment record has the wrong size";
    return NULL;
  }
  memcpy (&w, data, sizeof w);
  /* gst_event_new_segment() asserts these; check them instead. */
  if (!format_ok (w.format) || w.format == GST_FORMAT_UNDEFINED) {
    *why = "segment format unknown";
    return NULL;
  }
  if (!(w.rate != 0.0) || !(w.applied_rate != 0.0) || w.rate != w.rate
      || w.applied_rate != w.applied_rate) {
    *why = "segment rate is zero or not a number";
    return NULL;
  }
  if (w.stop != (uint64_t) - 1 && w.start > w.stop) {
    *why = "segment start is after its stop";
    return NULL;
  }
  GstSegment seg;
  gst_segment_init (&seg, (GstFormat) w.format);
  seg.flags = (GstSegmentFlags) (w.flags & 0xffff);
  seg.rate = w.rate;
  seg.applied_rate = w.applied_rate;
  seg.base = w.base;
  seg.offset = w.offset;
  seg.start = w.start;
  seg.stop = w.stop;
  seg.time = w.time;
  seg.position = w.position;
  seg.duration = w.duration;
  GstEvent *ev = gst_event_new_segment (&seg);
  if (w.seqnum)
    gst_event_set_seqnum (ev, w.seqnum);
  return ev;
}

static GstEvent *
structure_to_event (GstEventType type, GstStructure * s, const gchar ** why)
{
  guint u = 0, u2 = 0;
  guint64 t1 = 0, t2 = 0;
  gint64 i1 = 0, i2 = 0;
  gboolean b = FALSE;
  GstEvent *ev = NULL;

  switch (type) {
    case GST_EVENT_STREAM_START:{
      const gchar *id = gst_structure_get_string (s, "stream-id");
      if (!id || !gst_structure_get_uint (s, "flags", &u))
        break;
      ev = gst_event_new_stream_start (id);
      gst_event_set_stream_flags (ev, (GstStreamFlags) u);
      if (gst_structure_get_uint (s, "group-id", &u2) && u2 != 0)
        gst_event_set_group_id (ev, u2);
      break;
    }
    case GST_EVENT_TAG:{
      GstTagList *parsed = NULL;
      if (!gst_structure_get (s, "taglist", GST_TYPE_TAG_LIST, &parsed, NULL))
        break;
      /* Unknown and mistyped tags are dropped, the others kept. */
      GstTagList *tags = clean_tags (parsed);
      gst_tag_list_unref (parsed);
      if (gst_structure_get_uint (s, "scope", &u) && u == GST_TAG_SCOPE_GLOBAL)
        gst_tag_list_set_scope (tags, GST_TAG_SCOPE_GLOBAL);
      else
        gst_tag_list_set_scope (tags, GST_TAG_SCOPE_STREAM);
      ev = gst_event_new_tag (tags);
      break;
    }
    case GST_EVENT_GAP:
      if (!gst_structure_get_uint64 (s, "timestamp", &t1)
          || !gst_structure_get_uint64 (s, "duration", &t2) || t1 == GST_CLOCK_TIME_NONE)
        break;
      ev = gst_event_new_gap (t1, t2);
      if (gst_structure_get_uint (s, "flags", &u))
        gst_event_set_gap_flags (ev, (GstGapFlags) u);
      break;
    case GST_EVENT_STREAM_GROUP_DONE:
      if (!gst_structure_get_uint (s, "group-id", &u) || u == 0)
        break;
      ev = gst_event_new_stream_group_done (u);
      break;
    case GST_EVENT_SEGMENT_DONE:
      if (!gst_structure_get_uint (s, "format", &u) || !format_ok (u)
          || !gst_structure_get_int64 (s, "position", &i1))
        break;
      ev = gst_event_new_segment_done ((GstFormat) u, i1);
      break;
    case GST_EVENT_BUFFERSIZE:
      if (!gst_structure_get_uint (s, "format", &u) || !format_ok (u)
          || !gst_structure_get_int64 (s, "minsize", &i1)
          || !gst_structure_get_int64 (s, "maxsize", &i2)
          || !gst_structure_get_boolean (s, "async", &b))
        break;
      ev = gst_event_new_buffer_size ((GstFormat) u, i1, i2, b);
      break;
    case GST_EVENT_PROTECTION:{
      const gchar *system_id = gst_structure_get_string (s, "system-id");
      const gchar *origin = gst_structure_get_string (s, "origin");
      GstBuffer *data = NULL;
      if (!system_id || !gst_structure_get (s, "data", GST_TYPE_BUFFER, &data, NULL))
        break;
      /* GStreamer names the event's structure after the origin and the
       * system id, a name it interns: charged to the budget like the
       * parser's names (and refunded if no GQuark was made after all). */
      gchar *name = origin ? g_strconcat ("GstProtectionEvent-", origin, "-", system_id, NULL)
          : g_strconcat ("GstProtectionEvent-", system_id, NULL);
      Check pc;
      check_init (&pc, TRUE);
      gboolean named = charge_name (&pc, name, strlen (name));
      if (named)
        ev = gst_event_new_protection (system_id, data, origin);
      check_finish (&pc);
      g_free (name);
      gst_buffer_unref (data);
      if (!named) {
        *why = pc.why;
        return NULL;
      }
      break;
    }
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:
      return gst_event_new_custom (type, gst_structure_copy (s));
    default:
      *why = "event type is not one that is carried";
      return NULL;
  }
  if (!ev)
    *why = "event fields missing or of the wrong type";
  return ev;
}

/* The part of an EVNT or UEVT record both decoders share: the header (its
 * type one that is_carried accepts), then the structure string, checked
 * before GStreamer parses it and parsed whole. NULL with *why on refusal. */
static GstStructure *
decode_event_structure (const guint8 * data, gsize len, gboolean (*is_carried) (guint32),
    IpcRingWireEvent * hdr, const gchar ** why)
{
  if (len < sizeof *hdr) {
    *why = "event record too short";
    return NULL;
  }
  memcpy (hdr, data, sizeof *hdr);
  if (!is_carried (hdr->type)) {
    *why = "event type is not one that is carried";
    return NULL;
  }
  gchar *str = copy_string (data + sizeof *hdr, len - sizeof *hdr, IPCRING_MAX_EVENT_STRING, why);
  if (!str)
    return NULL;
  Check c;
  check_init (&c, TRUE);
  GstStructure *s = NULL;
  gchar *end = NULL;
  if (check_event_string (&c, (GstEventType) hdr->type, str))
    s = gst_structure_from_string (str, &end);
  check_finish (&c);
  if (s && *end != '\0') {
    gst_structure_free (s);
    s = NULL;
    c.why = "event structure has text after its end";
  }
  g_free (str);
  if (!s)
    *why = c.why ? c.why : "event structure does not parse";
  return s;
}

GstEvent *
ipcring_wire_decode_event (const guint8 * data, gsize len, const gchar ** why)
{
  IpcRingWireEvent hdr;
  GstStructure *s = decode_event_structure (data, len, ipcring_wire_event_type_is_carried, &hdr, why);
  if (!s)
    return NULL;
  GstEvent *ev = structure_to_event ((GstEventType) hdr.type, s, why);
  gst_structure_free (s);
  /* What a relay's sink would write for it must be what a reader accepts
   * (an untyped list of mixed values, say, prints with the type of its
   * first value and then does not parse). */
  if (ev) {
    const gchar *why_again = NULL;
    GBytes *again = ipcring_wire_encode_event (ev, &why_again);
    if (!again) {
      gst_event_unref (ev);
      *why = "event would not be written again";
      return NULL;
    }
    g_bytes_unref (again);
  }
  if (ev && hdr.seqnum)
    gst_event_set_seqnum (ev, hdr.seqnum);
  return ev;
}

gboolean
ipcring_wire_decode_buffer_header (const guint8 * data, gsize len, IpcRingWireBuffer * out,
    const gchar ** why)
{
  if (len < sizeof *out) {
    *why = "buffer record too short";
    return FALSE;
  }
  memcpy (out, data, sizeof *out);
  return TRUE;
}

/* ---- Live streams: TIME and DROP ------------------------------------------ */

gboolean
ipcring_wire_decode_time (const guint8 * data, gsize len, IpcRingWireTime * out,
    const gchar ** why)
{
  if (len != sizeof *out) {
    *why = "time record of the wrong size";
    return FALSE;
  }
  memcpy (out, data, sizeof *out);
  if ((out->flags & ~IPCRING_TIME_ALL_FLAGS) || out->reserved) {
    *why = "time record with unknown flags";
    return FALSE;
  }
  return TRUE;
}

gboolean
ipcring_wire_decode_drop (const guint8 * data, gsize len, IpcRingWireDrop * out,
    const gchar ** why)
{
  if (len != sizeof *out) {
    *why = "drop record of the wrong size";
    return FALSE;
  }
  memcpy (out, data, sizeof *out);
  return TRUE;
}

/* ---- Upstream events: the back channel ------------------------------------ */

static gboolean
upstream_type_is_carried (guint32 type)
{
  switch (type) {
    case GST_EVENT_QOS:
    case GST_EVENT_NAVIGATION:
    case GST_EVENT_RECONFIGURE:
    case GST_EVENT_CUSTOM_UPSTREAM:
      return TRUE;
    default:
      return FALSE;
  }
}

gboolean
ipcring_wire_upstream_event_is_carried (GstEvent * event)
{
  return upstream_type_is_carried (GST_EVENT_TYPE (event));
}

#define NAVIGATION_NAME "application/x-gst-navigation"

static GstStructure *
upstream_event_to_structure (GstEvent * event)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_QOS:{
      GstQOSType type;
      gdouble proportion;
      GstClockTimeDiff diff;
      GstClockTime ts;
      gst_event_parse_qos (event, &type, &proportion, &diff, &ts);
      return gst_structure_new ("qos", "type", G_TYPE_UINT, (guint) type,
          "proportion", G_TYPE_DOUBLE, proportion, "diff", G_TYPE_INT64, (gint64) diff,
          "timestamp", G_TYPE_UINT64, (guint64) ts, NULL);
    }
    case GST_EVENT_RECONFIGURE:
      return gst_structure_new_empty ("reconfigure");
    case GST_EVENT_NAVIGATION:
    case GST_EVENT_CUSTOM_UPSTREAM:{
      const GstStructure *st = gst_event_get_structure (event);
      return st ? gst_structure_copy (st) : NULL;
    }
    default:
      return NULL;
  }
}

GBytes *
ipcring_wire_encode_upstream_event (GstEvent * event, gsize max, const gchar ** why)
{
  if (!ipcring_wire_upstream_event_is_carried (event)) {
    *why = "upstream event type is not carried";
    return NULL;
  }
  GstStructure *s = upstream_event_to_structure (event);
  if (!s) {
    *why = "upstream event without a structure";
    return NULL;
  }
  if (max < sizeof (IpcRingWireEvent)) {
    gst_structure_free (s);
    *why = "upstream event too large for the back channel";
    return NULL;
  }
  return encode_event_structure (event, s, max,
      "upstream event too large for the back channel", why);
}

static GstEvent *
structure_to_upstream_event (GstEventType type, const GstStructure * s, const gchar ** why)
{
  switch (type) {
    case GST_EVENT_QOS:{
      guint t;
      gdouble proportion;
      gint64 diff;
      guint64 ts;
      if (!gst_structure_has_name (s, "qos")
          || !gst_structure_get_uint (s, "type", &t)
          || !gst_structure_get_double (s, "proportion", &proportion)
          || !gst_structure_get_int64 (s, "diff", &diff)
          || !gst_structure_get_uint64 (s, "timestamp", &ts)) {
        *why = "qos event without its fields";
        return NULL;
      }
      /* gst_event_new_qos() asserts a late buffer's lateness is within its
       * timestamp (diff >= 0 || -diff <= timestamp). */
      if (t > GST_QOS_TYPE_THROTTLE || !isfinite (proportion) || proportion < 0.0
          || !GST_CLOCK_TIME_IS_VALID (ts) || (diff < 0 && (diff == G_MININT64
                  || (guint64) - diff > ts))) {
        *why = "qos event with invalid values";
        return NULL;
      }
      return gst_event_new_qos ((GstQOSType) t, proportion, diff, ts);
    }
    case GST_EVENT_RECONFIGURE:
      if (!gst_structure_has_name (s, "reconfigure") || gst_structure_n_fields (s) != 0) {
        *why = "malformed reconfigure event";
        return NULL;
      }
      return gst_event_new_reconfigure ();
    case GST_EVENT_NAVIGATION:
      if (!gst_structure_has_name (s, NAVIGATION_NAME)) {
        *why = "navigation event with another structure";
        return NULL;
      }
      return gst_event_new_navigation (gst_structure_copy (s));
    case GST_EVENT_CUSTOM_UPSTREAM:
      return gst_event_new_custom (GST_EVENT_CUSTOM_UPSTREAM, gst_structure_copy (s));
    default:
      *why = "upstream event type is not carried";
      return NULL;
  }
}

GstEvent *
ipcring_wire_decode_upstream_event (const guint8 * data, gsize len, const gchar ** why)
{
  IpcRingWireEvent hdr;
  GstStructure *s = decode_event_structure (data, len, upstream_type_is_carried, &hdr, why);
  if (!s)
    return NULL;
  GstEvent *ev = structure_to_upstream_event ((GstEventType) hdr.type, s, why);
  gst_structure_free (s);
  if (ev && hdr.seqnum)
    gst_event_set_seqnum (ev, hdr.seqnum);
  return ev;
}
