/* Secrets never reach a log line: URL passwords are redacted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "gw/amqp.h"

static void check(const char *in, const char *want)
{
    char buf[256];
    assert_string_equal(gw_amqp_url_redact(in, buf, sizeof buf), want);
}

static void test_redact(void **state)
{
    char small[12];
    (void)state;
    check("amqp://u:secret@h:5672", "amqp://u:***@h:5672");
    check("amqps://user:p%40ss:w@[::1]:5671/x", "amqps://user:***@[::1]:5671/x");
    check("amqp://u@h", "amqp://u@h");
    check("amqp://h:5672", "amqp://h:5672");
    check("amqp://h:5672/a@b:c", "amqp://h:5672/a@b:c"); /* '@' after the authority */
    check("u:pw@h:1", "u:***@h:1");
    check("", "");
    assert_string_equal(gw_amqp_url_redact(NULL, small, sizeof small), "");
    /* Truncated, still NUL-terminated, never the password. */
    gw_amqp_url_redact("amqp://u:secret@host", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(strstr(small, "secret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_redact)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
