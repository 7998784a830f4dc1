# One line per test file in this folder: dacl_unit_test(<file name without .c> LIBS ... LABELS ...)
dacl_unit_test(test_common_error LIBS dacl_common)
dacl_unit_test(test_eval_metrics LIBS dacl_eval LABELS reference)
dacl_unit_test(test_nn_reference LIBS dacl_nn LABELS reference)
