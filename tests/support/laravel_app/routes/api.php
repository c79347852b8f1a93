<?php

use App\Http\Controllers\PageController;
use Illuminate\Support\Facades\Route;

Route::post('/messages', [PageController::class, 'dispatchJob']);
